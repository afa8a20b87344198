"""What a pool runs, decided from its configs before any worker starts, and checked after.

:meth:`PoolPlan.make` resolves each env's game, state and scenario (no emulator in the parent),
the buttons and action set they share, the info names, who evaluates each scenario, the
emulator backend and how many envs each worker holds, and creates the movie folders. Every
refusal here is an :class:`~fastretro.errors.InvalidArgumentError` raised before a process
starts. What only a worker can tell (the screen, the action table) :meth:`PoolPlan.check_ready`
checks once the workers have started.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from fastretro.config import EnvConfig, PoolConfig
from fastretro.errors import InvalidArgumentError
from fastretro.runtime.actions import ActionChoice, choose
from fastretro.runtime.backends import PER_PROCESS, choose_backend
from fastretro.runtime.games import GameSetup, resolve_all
from fastretro.runtime.protocol import WorkerReady
from fastretro.runtime.stats import available_cores
from fastretro.runtime.threads import check_backend
from fastretro.runtime.worker import scenario_plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolPlan:
    """What a pool of ``num_envs`` envs runs. Make with :meth:`make`."""

    setups: list[GameSetup]
    """Each env's resolved game, state and scenario."""
    buttons: tuple[str, ...]
    """The console's buttons (every env's)."""
    actions: ActionChoice
    """The action set every env takes."""
    info_names: tuple[str, ...]
    """The RAM variables of every env's infos, sorted."""
    scenario_engines: tuple[str, ...]
    """Per env: "fastretro" (the worker evaluates the scenario) or "stable-retro"."""
    backend: str
    """The emulator backend."""
    backend_why: str
    """Why the pool runs on it."""
    pool_config: PoolConfig
    """The pool config, with ``envs_per_worker`` decided."""

    @classmethod
    def make(cls, config: EnvConfig, pool_config: PoolConfig) -> PoolPlan:
        """Plan ``pool_config.num_envs`` envs of ``config``; create their movie folders.

        Raises:
            InvalidArgumentError: (and its subclasses) for envs that cannot share a pool, an
                option their games or backend refuse, or a movie folder that cannot be made.
        """
        cfg, pc, n = config, pool_config, pool_config.num_envs
        setups = resolve_all(cfg, n)
        buttons = {s.buttons for s in setups}
        if len(buttons) != 1:
            raise InvalidArgumentError(
                "Expected every env's console to have the same buttons, got "
                f"{sorted(buttons)}: run games of one console per pool"
            )
        choice = choose(cfg.actions, setups[0].buttons, setups[0].game)
        engines = tuple(
            "fastretro" if scenario_plan(s, cfg.scenario_engine) is not None else "stable-retro"
            for s in setups
        )
        if cfg.scenario_engine == "auto":
            for why in sorted({s.scenario_plan_why_not for s in setups} - {""}):
                log.debug("stable-retro evaluates a scenario: %s", why)
        backend, why = choose_backend(cfg, setups)
        if cfg.episodic_life and backend != "ale":
            _check_lives(setups)
        log.debug("emulator backend %s: %s", backend, why)
        check_backend(backend, pc)  # what this process's own emulators allow (threads.py)
        per_process = PER_PROCESS[backend]
        if pc.envs_per_worker is None:
            # A worker per core where one process may hold several emulators: one wake-up then
            # steps all of a core's envs, and no two workers share a core.
            share = -(-n // min(n, available_cores()))
            pc = pc.replace(envs_per_worker=per_process or share)
        elif per_process is not None and pc.envs_per_worker > per_process:
            raise InvalidArgumentError(
                f"Expected envs_per_worker <= {per_process} with the {backend} backend (its "
                f"emulators allow {per_process} per process), got {pc.envs_per_worker}"
            )
        _make_record_dirs(cfg, n)
        info_names = tuple(sorted({v for s in setups for v in s.info_names}))
        return cls(setups, setups[0].buttons, choice, info_names, engines, backend, why, pc)

    def check_ready(
        self, ready: Sequence[WorkerReady]
    ) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
        """Check that the started envs agree; their ``(screen_shape, action_mode, action_sizes)``.

        Raises:
            InvalidArgumentError: for envs of different screens or action tables.
        """
        shapes = {r.screen_shape for r in ready}
        if len(shapes) != 1:
            raise InvalidArgumentError(
                f"Expected every env to have the same screen shape, got {sorted(shapes)}"
                ": run games of one resolution per pool"
            )
        tables = {(r.action_mode, r.action_sizes) for r in ready}
        if len(tables) != 1:
            raise InvalidArgumentError(
                f"Expected every env to have the same {self.actions.name!r} action space, "
                f"got {sorted(tables)}: run games with the same button combos per pool"
            )
        (screen_shape,) = shapes
        ((mode, sizes),) = tables
        return screen_shape, mode, sizes


def _check_lives(setups: Sequence[GameSetup]) -> None:
    for s in setups:
        if "lives" not in s.info_names:
            raise InvalidArgumentError(
                f"episodic_life needs the game's lives: {s.game} has no 'lives' variable in its "
                "data.json (the ALE backend counts lives for Atari games)"
            )


def _make_record_dirs(config: EnvConfig, num_envs: int) -> None:
    """Create each env's movie folder (``record``)."""
    if config.record is None:
        return
    if isinstance(config.record, tuple) and len(config.record) != num_envs:
        raise InvalidArgumentError(
            "Expected record to be a folder path, a list of num_envs folder paths or None, got list"
        )

    if isinstance(config.record, str) and os.path.exists(config.record):
        if not os.path.isdir(config.record):
            raise InvalidArgumentError(f"record={config.record!r} exists and is not a folder")
    for i in range(num_envs):
        d = config.record_dir(i)
        if os.path.exists(d) and not os.path.isdir(d):
            raise InvalidArgumentError(f"record={d!r} exists and is not a folder")
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot create the movie folder {d!r}: {exc}") from None
