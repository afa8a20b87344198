"""Snapshots: an emulator's state where an episode did best, and loading it into an env again.

With ``snapshot_best=True`` each worker keeps the state at which its episode first reaches its
highest return and publishes it into the env's slot of shared memory when the episode ends
(ext/worker_loop.pyx). :class:`SnapshotSlots` is the parent's side: it reads a published
snapshot out of the slot, and checks and stages one for ``restore`` (the worker loads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fastretro.errors import InvalidArgumentError, StateMachineError
from fastretro.runtime.protocol import Command

if TYPE_CHECKING:  # for annotations only: the public Snapshot stays a light import
    from fastretro.config import EnvConfig
    from fastretro.runtime.games import GameSetup


@dataclass(frozen=True)
class Snapshot:
    """An emulator's state inside an episode, and where the episode stood there.

    Made by :meth:`VecRetroEnv.best_snapshot`; loaded by :meth:`VecRetroEnv.restore`.
    """

    game: str
    """The game it belongs to (restoring into another game is refused)."""
    state: bytes
    """The emulator's save state (~1 MB on Genesis, mostly zeros)."""
    episode_step: int
    """Agent steps into the episode at that point (the ``max_episode_steps`` count goes on)."""
    episode_return: float
    """The episode's cumulative reward at that point (after ``reward_scale``/clipping)."""
    screen: np.ndarray | None = None
    """The screen there (a loaded state shows no frame until the next emulator step);
    ``None`` from a pool with ``observe=False``."""


class SnapshotSlots:
    """The parent's view of every env's snapshot slot in shared memory.

    Args:
        arrays: the pool's shared arrays (``snap``, ``snap_len``, ``snap_step``,
            ``snap_return``, ``snap_screen``, and ``cmd`` for the restores).
        games: each env's game ID.
        engines: each env's scenario engine ("fastretro" or "stable-retro").
        why_not: each env's reason the worker cannot evaluate its scenario ("" if it can).
        recording: whether the pool records movies.
        observe: whether the pool produces observations (snapshots then carry the screen).
        enabled: whether the workers keep snapshots (``snapshot_best``).
        running: async mode: per env, whether it is running (its worker may write its slot
            then); ``None`` in lock-step.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        games: list[str],
        engines: tuple[str, ...],
        why_not: list[str],
        recording: bool,
        observe: bool,
        enabled: bool = True,
        running: np.ndarray | None = None,
    ) -> None:
        self.a = arrays
        self.games, self.engines, self.why_not = games, engines, why_not
        self.recording, self.observe = recording, observe
        self.enabled, self.running = enabled, running
        #: Per env: a snapshot was published since the last restore into it.
        self.fresh = np.zeros(len(games), dtype=bool)

    @classmethod
    def of(
        cls,
        arrays: dict[str, np.ndarray],
        config: EnvConfig,
        setups: list[GameSetup],
        engines: tuple[str, ...],
        running: np.ndarray | None,
    ) -> SnapshotSlots:
        """The slots of a pool of ``config``'s envs (``setups``; see the class for the rest)."""
        return cls(
            arrays,
            [s.game for s in setups],
            engines,
            [s.scenario_plan_why_not for s in setups],
            config.record is not None,
            config.observe,
            config.snapshot_best,
            running,
        )

    def best(self, env_id: Any) -> Snapshot:
        """The snapshot env ``env_id`` published (checked: there is one, and it may be read)."""
        i = self.check_env(env_id, "best_snapshot")
        if not self.fresh[i]:
            raise StateMachineError(
                f"Env {i} has no snapshot: it has not finished an episode since the pool "
                "started or since its last restore"
            )
        return self.read(i)

    def stage(self, snapshots: Mapping[int, Snapshot], call: str) -> np.ndarray:
        """Check ``{env_id: Snapshot}`` for ``call``, write it and the envs' RESTORE commands.

        Returns:
            The envs' mask, bool ``(num_envs,)``; the caller sends them.
        """
        if not isinstance(snapshots, Mapping) or not snapshots:
            raise InvalidArgumentError(
                f"Expected a non-empty {{env_id: Snapshot}} mapping, got {snapshots!r:.80}"
            )
        mask = self.write({self.check_env(i, call): s for i, s in snapshots.items()})
        self.a["cmd"][mask] = Command.RESTORE
        return mask

    def check_env(self, env_id: Any, call: str) -> int:
        """``env_id`` as an int, once ``call`` may use its slot."""
        if not self.enabled:
            raise InvalidArgumentError(f"{call} needs VecRetroEnv(..., snapshot_best=True)")
        n = len(self.games)
        if (
            isinstance(env_id, bool)
            or not isinstance(env_id, (int, np.integer))
            or not 0 <= env_id < n
        ):
            raise InvalidArgumentError(f"Expected an env_id in [0, {n}), got {env_id!r}")
        if self.running is not None and self.running[env_id]:
            # Its worker writes the snapshot slot when an episode ends.
            raise StateMachineError(
                f"Cannot call {call} for env {env_id} while it is running: recv it first"
            )
        return int(env_id)

    def read(self, env: int) -> Snapshot:
        """The snapshot env ``env`` published (it must be :attr:`fresh`)."""
        a = self.a
        n = int(a["snap_len"][env])
        return Snapshot(
            self.games[env],
            a["snap"][env, :n].tobytes(),
            int(a["snap_step"][env]),
            float(a["snap_return"][env]),
            a["snap_screen"][env].copy() if self.observe else None,
        )

    def write(self, snapshots: Mapping[int, Snapshot]) -> np.ndarray:
        """Check ``{env: Snapshot}`` (envs already checked) and write it; the envs' mask.

        What the parent can check, it checks here, before any worker sees the snapshot: the
        game, the scenario engine, the screen's shape, a non-empty state that fits the slot, a
        step count >= 0 and a finite return. Whether the emulator accepts the state's bytes
        only the worker knows: a state it refuses raises there (and closes the pool).
        """
        a = self.a
        for i, snap in snapshots.items():
            if not isinstance(snap, Snapshot):
                raise InvalidArgumentError(
                    f"Expected a Snapshot for env {i}, got {type(snap).__name__}"
                )
            if snap.game != self.games[i]:
                raise InvalidArgumentError(
                    f"Cannot restore a snapshot of {snap.game} into env {i}, which runs "
                    f"{self.games[i]}"
                )
            if self.engines[i] != "fastretro":
                raise InvalidArgumentError(
                    f"Cannot restore env {i}: stable-retro evaluates its scenario, and a save "
                    f"state does not carry the scenario's own variables "
                    f"({self.why_not[i] or 'scenario_engine=stable-retro'})"
                )
            if self.recording:
                raise InvalidArgumentError(
                    f"Cannot restore env {i} while recording: its .bk2 movie replays from reset"
                )
            if self.observe and (
                snap.screen is None or np.shape(snap.screen) != a["snap_screen"].shape[1:]
            ):
                raise InvalidArgumentError(
                    f"Expected the snapshot for env {i} to hold a screen of shape "
                    f"{a['snap_screen'].shape[1:]}, got "
                    f"{None if snap.screen is None else np.shape(snap.screen)}"
                )
            if not isinstance(snap.state, bytes) or not snap.state:
                got = "0 bytes" if isinstance(snap.state, bytes) else type(snap.state).__name__
                raise InvalidArgumentError(
                    f"Expected a non-empty save state (bytes) for env {i}, got {got}"
                )
            if (
                isinstance(snap.episode_step, bool)
                or not isinstance(snap.episode_step, (int, np.integer))
                or snap.episode_step < 0
            ):
                raise InvalidArgumentError(
                    f"Expected the snapshot for env {i} to have an int episode_step >= 0, got "
                    f"{snap.episode_step!r}"
                )
            if not isinstance(snap.episode_return, (int, float, np.number)) or not np.isfinite(
                snap.episode_return
            ):
                raise InvalidArgumentError(
                    f"Expected the snapshot for env {i} to have a finite episode_return, got "
                    f"{snap.episode_return!r}"
                )
            if len(snap.state) > a["snap"].shape[1]:
                raise InvalidArgumentError(
                    f"Expected a save state of at most {a['snap'].shape[1]} bytes for env {i}, "
                    f"got {len(snap.state)}"
                )
        mask = np.zeros(len(self.games), dtype=bool)
        for i, snap in snapshots.items():
            n = len(snap.state)
            a["snap"][i, :n] = np.frombuffer(snap.state, np.uint8)
            a["snap_len"][i] = n
            a["snap_step"][i] = snap.episode_step
            a["snap_return"][i] = snap.episode_return
            if self.observe:
                a["snap_screen"][i] = snap.screen
            mask[i] = True
        self.fresh[mask] = False
        return mask
