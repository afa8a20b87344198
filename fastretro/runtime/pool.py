"""VecRetroEnv: N stable-retro emulators in worker processes, in lock-step over shared memory.

The parent never creates an emulator (stable-retro allows one per process). Each worker owns one
emulator and one row of every shared array; a step is: the parent writes the actions, wakes the
workers (``fastretro.runtime._ext.handshake``), and sleeps until the last one has written its results.
Nothing is pickled on that path.

The public state machine has three states, as gymnasium's ``AsyncVectorEnv``: IDLE,
WAITING_RESET and WAITING_STEP. Each ``*_async`` call checks and sets it, each ``*_wait`` checks
and resets it; misuse raises :class:`~fastretro.errors.StateMachineError` naming the pending call.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fastretro import DEFAULT_GAME
from fastretro.errors import (
    ActionError,
    ClosedError,
    InvalidArgumentError,
    RemoteTraceback,
    StateMachineError,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
)
from fastretro.runtime import actions as fr_actions
from fastretro.runtime import logs, shm
from fastretro.runtime.games import EnvSpec, resolve_all
from fastretro.runtime.preprocess import FrameWriter, Preprocessing, copy_into, stack_views
from fastretro.runtime.shm import Layout, SharedBuffers
from fastretro.runtime.stats import TIMING_STRIDE, TIMING_WIDTH, PoolStats, process_cpu_seconds
from fastretro.runtime.worker import WorkerOptions, scenario_plan, worker_main

log = logging.getLogger("fastretro.runtime.pool")

# Command codes and autoreset codes shared with ext/worker_loop.pyx.
CMD_STEP, CMD_RESET, CMD_CLOSE, CMD_RESTORE, CMD_SEQUENCE = 1, 2, 3, 4, 5
_AUTORESET_CODES = {
    AutoresetMode.NEXT_STEP: 0,
    AutoresetMode.SAME_STEP: 1,
    AutoresetMode.DISABLED: 2,
}
_SEM_STRIDE = 64  # fastretro.runtime._ext.handshake.SEM_STRIDE, checked at construction
# A waiting parent wakes this often to check that its workers are alive: it bounds how long a
# killed worker goes unnoticed, and costs nothing while steps complete sooner than this.
_LIVENESS_POLL_S = 0.05
#: A restarted worker that dies again within this many seconds raises instead of restarting.
RESTART_WINDOW_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    """An emulator's state inside an episode, and where the episode stood there.

    Made by :meth:`VecRetroEnv.best_snapshot`; loaded by :meth:`VecRetroEnv.restore`.
    """

    game: str
    """The game it belongs to (restoring into another game is refused)."""
    state: bytes
    """The emulator's save state (``em.get_state()``; ~1 MB on Genesis, mostly zeros)."""
    episode_step: int
    """Agent steps into the episode at that point (the ``max_episode_steps`` count goes on)."""
    episode_return: float
    """The episode's cumulative reward at that point (after ``reward_scale``/clipping)."""
    screen: np.ndarray | None = None
    """The screen there (a loaded state shows no frame until the next emulator step);
    ``None`` from a pool with ``observe=False``."""


class State(enum.Enum):
    """Where the pool is in its call protocol."""

    IDLE = "idle"
    WAITING_RESET = "reset"
    WAITING_STEP = "step"


class VecRetroEnv(gymnasium.vector.VectorEnv):
    """N stable-retro emulators, one per worker process, with observations in shared memory.

    Args:
        game: a stable-retro game ID (``"Airstriker-Genesis-v0"``), or one per env.
        num_envs: number of emulators (and worker processes), >= 1.
        state: save state to start episodes from (name or path), or one per env; ``None`` for
            the game's default.
        scenario: scenario (reward/done definition) name or ``.json`` path, or one per env.
        frameskip: emulator frames per agent step (>= 1). Frames are counted the EnvPool way:
            agent steps x frameskip.
        sticky_prob: the Retro Contest's sticky frame timing: on the first frame of each step,
            the previous action is repeated with this probability. Seeded per env.
        actions: the action set: ``"filtered"`` (default; stable-retro's MultiBinary over the
            buttons, filtered), ``"discrete"``/``"multi_discrete"`` (stable-retro's button
            combos), ``"sonic7"`` (retro-baselines' SonicDiscretizer), ``"sonic10"`` (sonic7
            plus no-op, LEFT+B, RIGHT+B), or a list of button combos (``[["LEFT"], ["RIGHT",
            "B"], []]`` or ``["LEFT", "RIGHT+B", ""]``). See :mod:`fastretro.runtime.actions`.
        grayscale: observe ITU-R 601 luma (``cv2.cvtColor(RGB2GRAY)``), 1 channel.
        resize: ``(height, width)`` to shrink the frame to by area averaging
            (``cv2.resize(INTER_AREA)``).
        crop: pixels to cut from the ``(top, bottom, left, right)`` edges before resizing.
        max_pool: observe the pixel-wise max of the step's last two frames (needs frameskip >= 2).
        frame_stack: observe the last ``k`` frames concatenated on the channel axis, newest
            last (a view of a ring in shared memory: no copying per step).
        channels_first: observations of shape (C, H, W) instead of (H, W, C), as PyTorch
            convolutions take them (SB3's CnnPolicy then needs no ``VecTransposeImage``), and
            frame stacks are then contiguous per env.
        reward_scale: multiply rewards by this.
        clip_reward: clip (scaled) rewards to ``[-clip_reward, clip_reward]``; ``None``: no clip.
        allow_backtracking: reward only progress beyond the episode's best cumulative reward,
            ``max(0, x - max_x)`` (retro-baselines' AllowBacktracking, used on the contest's
            x-progress reward), applied before scaling and clipping.
        record: a folder: every env records each episode as a stable-retro ``.bk2`` movie in
            ``record/envNNN/GAME-STATE-NNNNNN.bk2`` with the buttons actually applied on every
            frame (sticky frames included), closed when the episode ends or the pool closes;
            or a list of one folder per env. Replay one with ``fastretro replay FILE``.
            ``None`` (default): no recording.
        observe: produce observations. ``False`` grabs no frame at all (agents such as JERK
            that never look at pixels); observations are then of shape ``(num_envs, 0)``.
        max_episode_steps: agent steps after which an episode is ``truncated``; ``None``: never.
        per_frame_reward: read RAM, reward and done after every frame (True) or once per agent
            step (False). Once per step gives the same reward where the scenario's reward is a
            sum of per-frame RAM deltas, and saves an evaluation per skipped frame (~65 us where
            stable-retro's ``update_ram`` does it, see ``scenario_engine``); the episode end is
            then seen at the end of the step rather than on its frame. ``None`` (default):
            per step, unless the scenario computes reward or done in a Lua script.
        scenario_engine: who evaluates the scenario's reward and done. ``"auto"`` (default):
            the worker itself, from the RAM variables it reads for ``info``, where the
            scenario is declarative (tests on ``data.json`` variables, as in most
            integrations), and stable-retro's ``data.update_ram`` where it is not (a Lua
            script, as in Sonic's ``contest``); same rewards and ends, ~65 us less per
            evaluation (fastretro/runtime/scenario.py). ``"stable-retro"``: always stable-retro.
            ``scenario_engines`` says which one each env got.
        autoreset_mode: gymnasium's ``AutoresetMode`` (or its string): NEXT_STEP (default),
            SAME_STEP (``final_obs``/``final_info`` in infos) or DISABLED (reset done envs
            with ``reset(options={"reset_mask": mask})``).
        seed: seed for the first ``reset`` when that call gives none.
        copy: return a copy of the observation batch. By default (False) the observation is a
            read-only view of the shared buffer, overwritten by the next ``step``/``reset``.
        start_method: multiprocessing start method ("fork", "forkserver" or "spawn");
            ``None`` picks "fork" on Linux (workers start in milliseconds and the parent has no
            emulator to duplicate), else the platform default.
        batch_size: async mode (EnvPool's): ``recv()`` returns the first ``batch_size`` envs
            to finish, with their ``env_id``, while the others keep running, and ``send(actions,
            env_ids)`` starts those envs again; the agent computes on one batch while the
            emulators run the rest. ``None`` (default): lock-step ``step``/``reset``.
        on_worker_failure: what a dead worker (its emulator crashed, or it was killed) does to
            a lock-step pool: ``"raise"`` (default) closes the pool and raises
            :class:`~fastretro.errors.WorkerDiedError`; ``"restart"`` replaces the worker (same
            game, state, scenario and seed), its env starts a new episode and reports
            ``truncated=True`` with ``infos["worker_restarted"]``, the other envs carry on, and
            ``worker_restarts`` counts it; a worker stuck in a step for ``step_timeout`` is
            killed and restarted likewise. A worker that dies again within
            ``RESTART_WINDOW_S`` seconds of its restart raises instead of looping.
        step_timeout: default seconds a ``step_wait``/``reset_wait`` waits before raising
            :class:`~fastretro.errors.WorkerTimeoutError`.
        startup_timeout: seconds the constructor waits for every worker to start.
        snapshot_best: every worker keeps the emulator state at which its episode first
            reaches its highest cumulative reward (a save state on each new best, ~4 us on
            Genesis) and, when the episode ends, publishes it: :meth:`best_snapshot` gives
            it, :meth:`restore` loads it into any env of the same game to go on from there
            (JERK's replay from saved states). Reserves one save state of shared memory per
            env (~1 MB on Genesis).
        sequence_length: the longest action sequence :meth:`step_sequences` and
            :meth:`send_sequences` take (0, the default: none). A sequence runs step after
            step inside its worker, with no round trip to the parent in between, for agents
            that decide a stretch of actions at once (JERK's moves and replays, scripted
            play). Needs ``observe=False``: only the last step's frame would survive.
        skip_rendering: run the frames of a step whose picture no observation uses without
            drawing it (all of them with ``observe=False``), where the core allows it: Genesis
            Plus GX, in Mega Drive mode (fastretro/runtime/headless.py). Such a frame costs ~0.6 of a
            drawn one; RAM, rewards and observations stay the same (with per-frame evaluation,
            an episode that ends on an undrawn frame runs that frame again, drawn, from the
            state saved before it). The VDP's sprite-overflow and sprite-collision status bits
            are not set on those frames: ``False`` draws every frame, for a game that reads
            them. ``skips_rendering`` says which envs do it.
        skip_audio: run the Genesis FM chip (YM2612) without synthesizing its sound while its
            timers are stopped, where the core's build allows it (fastretro/runtime/headless.py): the
            chip's synthesis is ~24% of the core's time, and nobody listens to a worker. A
            game sees only the chip's timers, which keep running exactly, so RAM, rewards and
            observations stay the same; the workers' audio loses its FM part (the PSG's is
            kept). ``False`` keeps the sound; ``skips_audio`` says which envs skip it.

    Observations are uint8 arrays of shape ``(num_envs, H, W, C)``: the screen's (H, W, 3) by
    default, or what the preprocessing options make of it, computed inside each worker by the
    kernels of :mod:`fastretro.runtime.kernels`. Actions follow ``single_action_space``.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        game: str | Sequence[str] = DEFAULT_GAME,
        num_envs: int = 1,
        state: str | None | Sequence[str | None] = None,
        scenario: str | None | Sequence[str | None] = None,
        *,
        frameskip: int = 1,
        sticky_prob: float = 0.0,
        actions: str | Sequence = "filtered",
        grayscale: bool = False,
        resize: tuple[int, int] | None = None,
        crop: tuple[int, int, int, int] | None = None,
        max_pool: bool = False,
        frame_stack: int = 1,
        channels_first: bool = False,
        reward_scale: float = 1.0,
        clip_reward: float | None = None,
        allow_backtracking: bool = False,
        observe: bool = True,
        record: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        max_episode_steps: int | None = None,
        per_frame_reward: bool | None = None,
        scenario_engine: str = "auto",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        seed: int | None = None,
        copy: bool = False,
        start_method: str | None = None,
        batch_size: int | None = None,
        on_worker_failure: str = "raise",
        step_timeout: float = 60.0,
        startup_timeout: float = 120.0,
        snapshot_best: bool = False,
        sequence_length: int = 0,
        skip_rendering: bool = True,
        skip_audio: bool = True,
    ) -> None:
        self._closed = True  # until construction succeeds; close() is then a no-op
        self._resources: _Resources | None = None
        num_envs = _check_int("num_envs", num_envs, minimum=1)
        frameskip = _check_int("frameskip", frameskip, minimum=1)
        if max_episode_steps is not None:
            max_episode_steps = _check_int("max_episode_steps", max_episode_steps, minimum=1)
        if not _is_number(sticky_prob) or not 0.0 <= sticky_prob <= 1.0:
            raise InvalidArgumentError(
                f"Expected sticky_prob to be a float in [0, 1], got {sticky_prob!r}"
            )
        if max_pool and frameskip < 2:
            raise InvalidArgumentError(
                f"max_pool needs at least two frames per step: expected frameskip >= 2, "
                f"got {frameskip}"
            )
        self.autoreset_mode = _autoreset_mode(autoreset_mode)
        if batch_size is not None and self.autoreset_mode == AutoresetMode.DISABLED:
            raise InvalidArgumentError(
                "Expected autoreset_mode NEXT_STEP or SAME_STEP with batch_size (async mode), "
                "got DISABLED"
            )
        for name, value in (("step_timeout", step_timeout), ("startup_timeout", startup_timeout)):
            if not _is_number(value) or not value > 0:
                raise InvalidArgumentError(f"Expected {name} > 0 seconds, got {value!r}")
        if seed is not None:
            _check_int("seed", seed, minimum=0)
        prep = Preprocessing.from_options(
            grayscale, resize, crop, max_pool, frame_stack, channels_first
        )
        if not _is_number(reward_scale) or not np.isfinite(reward_scale):
            raise InvalidArgumentError(
                f"Expected reward_scale to be a finite number, got {reward_scale!r}"
            )
        if clip_reward is not None and (not _is_number(clip_reward) or not clip_reward > 0):
            raise InvalidArgumentError(
                f"Expected clip_reward to be None or a number > 0, got {clip_reward!r}"
            )
        if batch_size is not None:
            batch_size = _check_int("batch_size", batch_size, minimum=1)
            if batch_size > num_envs:
                raise InvalidArgumentError(
                    f"Expected batch_size <= num_envs={num_envs}, got {batch_size}"
                )
        if scenario_engine not in ("auto", "stable-retro"):
            raise InvalidArgumentError(
                f"Expected scenario_engine to be 'auto' or 'stable-retro', got {scenario_engine!r}"
            )
        if on_worker_failure not in ("raise", "restart"):
            raise InvalidArgumentError(
                f"Expected on_worker_failure to be 'raise' or 'restart', got {on_worker_failure!r}"
            )
        if on_worker_failure == "restart" and batch_size is not None:
            raise InvalidArgumentError(
                "on_worker_failure='restart' works in lock-step mode only, got batch_size="
                f"{batch_size}"
            )
        sequence_length = _check_int("sequence_length", sequence_length, minimum=0)
        if sequence_length and observe:
            raise InvalidArgumentError(
                f"sequence_length={sequence_length} needs observe=False: the steps of a "
                "sequence run in the worker one after another, and only the last one's frame "
                "would reach the agent"
            )
        record_dirs = _record_dirs(record, num_envs)
        ctx = _context(start_method)

        self.specs: list[EnvSpec] = resolve_all(game, num_envs, state, scenario)
        buttons = {s.buttons for s in self.specs}
        if len(buttons) != 1:
            raise InvalidArgumentError(
                "Expected every env's console to have the same buttons, got "
                f"{sorted(buttons)}: run games of one console per pool"
            )
        self.buttons: tuple[str, ...] = self.specs[0].buttons
        action_choice = fr_actions.choose(actions, self.buttons)
        self.info_names: tuple[str, ...] = tuple(
            sorted({n for s in self.specs for n in s.info_names})
        )

        #: Per env: "fastretro" (the worker evaluates the scenario) or "stable-retro".
        self.scenario_engines: tuple[str, ...] = tuple(
            "fastretro" if scenario_plan(s, scenario_engine) is not None else "stable-retro"
            for s in self.specs
        )
        if scenario_engine == "auto":
            for why in sorted({s.scenario_plan_why_not for s in self.specs} - {""}):
                log.debug("stable-retro evaluates a scenario: %s", why)
        self.num_envs = num_envs
        self.frameskip = frameskip
        self.sticky_prob = float(sticky_prob)
        self.max_pool = prep.max_pool
        self.preprocessing = prep
        self.observe = bool(observe)
        self.max_episode_steps = max_episode_steps
        self.copy = bool(copy)
        self.batch_size = batch_size
        self.on_worker_failure = on_worker_failure
        #: Workers replaced after dying (``on_worker_failure="restart"``).
        self.worker_restarts = 0
        self._restarted = np.zeros(num_envs, dtype=bool)
        self._restart_times = np.full(num_envs, -np.inf)
        self._env_seeds = np.full(num_envs, -1, dtype=np.int64)
        self._in_flight = np.zeros(num_envs, dtype=bool)
        self._in_flight_u8 = self._in_flight.view(np.uint8)  # the same memory, for BatchIO
        self._slots = np.zeros(num_envs, dtype=np.int32)
        self._batch_ready = False
        self.step_timeout = float(step_timeout)
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        self._seed = seed
        self._state = State.IDLE
        self._env_has_info = np.array(
            [[n in s.info_names for n in self.info_names] for s in self.specs], dtype=bool
        ).reshape(num_envs, len(self.info_names))
        self._needs_reset = np.zeros(num_envs, dtype=bool)
        self._failure: str | None = None
        self.snapshot_best = bool(snapshot_best)
        self.sequence_length = sequence_length
        self._recording = record_dirs is not None
        self._snapshot_fresh = np.zeros(num_envs, dtype=bool)  # published since last restore

        opts = WorkerOptions(
            frameskip=frameskip,
            sticky_prob=self.sticky_prob,
            prep=prep,
            observe=self.observe,
            action_choice=action_choice,
            per_frame_reward=per_frame_reward,
            max_episode_steps=max_episode_steps,
            autoreset=_AUTORESET_CODES[self.autoreset_mode],
            info_names=self.info_names,
            buttons=self.buttons,
            allow_backtracking=bool(allow_backtracking),
            reward_scale=float(reward_scale),
            clip_reward=None if clip_reward is None else float(clip_reward),
            record=record_dirs,
            scenario_engine=scenario_engine,
            snapshot_best=bool(snapshot_best),
            skip_rendering=bool(skip_rendering),
            skip_audio=bool(skip_audio),
        )
        # Segments left by fastretro processes that were SIGKILLed (their owner is gone):
        # reclaimed here, as `fastretro cleanup` would.
        orphans = shm.cleanup_orphans()
        if orphans:
            log.info("removed %d orphaned shared-memory segment(s): %s", len(orphans), orphans)
        res = self._resources = _Resources()
        self._finalizer = weakref.finalize(self, res.shutdown, 5.0)
        self._closed = False
        self._startup_timeout = float(startup_timeout)
        try:
            log_queue = logs.worker_log_queue(ctx)
            res.start_method = ctx.get_start_method()
            # Kept for restarting a worker with exactly what the first one got.
            self._spawn_args = (ctx, worker_main, opts, log_queue)
            for i in range(num_envs):
                res.procs.append(None)
                res.conns.append(None)
                self._start_worker(i)
            deadline = time.monotonic() + startup_timeout
            ready = self._gather("ready", deadline)
            shapes = {r[0] for r in ready}
            if len(shapes) != 1:
                raise InvalidArgumentError(
                    f"Expected every env to have the same screen shape, got {sorted(shapes)}"
                    ": run games of one resolution per pool"
                )
            tables = {r[1:3] for r in ready}
            if len(tables) != 1:
                raise InvalidArgumentError(
                    f"Expected every env to have the same {action_choice.name!r} action space, "
                    f"got {sorted(tables)}: run games with the same button combos per pool"
                )
            (self.screen_shape,) = shapes
            ((action_mode, action_sizes),) = tables
            self._action_mode, self._action_sizes = action_mode, action_sizes
            raw_screens = {r[4] for r in ready}  # one screen shape: one raw shape
            #: Per env: whether frames no observation uses run without drawing (Genesis).
            self.skips_rendering: tuple[bool, ...] = tuple(r[5] for r in ready)
            #: Per env: whether the FM chip runs without its sound (Genesis; ``skip_audio``).
            self.skips_audio: tuple[bool, ...] = tuple(r[6] for r in ready)
            self._create_buffers(self.screen_shape, max(r[3] for r in ready), raw_screens.pop())
            if self.observe and (prep.grayscale or prep.resize is not None):
                _compile_kernels(prep, self.screen_shape, res.buffers.arrays["obs"][0])
            for conn in res.conns:
                conn.send(("attach", res.buffers.layout, res.buffers.name))
            self._gather("attached", deadline)
        except BaseException:
            self.close()
            raise

        self.single_observation_space = gymnasium.spaces.Box(0, 255, self._obs_shape, np.uint8)
        self.single_action_space = fr_actions.space(action_mode, action_sizes)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

    # -- construction helpers -------------------------------------------------------------

    def _create_buffers(
        self, screen_shape: tuple[int, ...], state_size: int, raw_screen: tuple[int, ...]
    ) -> None:
        from fastretro.runtime._ext.handshake import SEM_STRIDE, BatchIO, Handshake
        from fastretro.runtime._ext.worker_loop import TIMING_WIDTH as COMPILED_WIDTH

        assert SEM_STRIDE == _SEM_STRIDE
        assert COMPILED_WIDTH == TIMING_WIDTH
        n, k = self.num_envs, len(self.info_names)
        prep = self.preprocessing
        if self.observe:
            self._obs_shape = prep.observation_shape(screen_shape)
            buffer_shape = prep.buffer_shape(screen_shape)
        else:
            self._obs_shape = buffer_shape = (0,)
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        layout = Layout.build(
            [
                ("obs", (n, *buffer_shape), "u1"),
                ("final_obs", (n, *self._obs_shape) if same_step else (n, 0), "u1"),
                ("slot", (n,), "i4"),
                ("actions", (n, len(self._action_sizes)), "i8"),
                ("rewards", (n,), "f8"),
                ("terminated", (n,), "u1"),
                ("truncated", (n,), "u1"),
                ("info", (n, k), "i8"),
                ("final_info", (n, k), "i8"),
                ("queue", (n if self.batch_size is not None else 0,), "i4"),
                ("cmd", (n,), "i4"),
                ("arg", (n,), "i8"),
                ("status", (n,), "i4"),
                ("counter", (48,), "i4"),
                ("timing", (n, TIMING_STRIDE), "i8"),
                ("snap", (n, state_size), "u1"),
                ("snap_len", (n,), "i8"),
                ("snap_step", (n,), "i8"),
                ("snap_return", (n,), "f8"),
                ("snap_screen", (n, *raw_screen) if state_size and self.observe else (n, 0), "u1"),
                ("seq_actions", (n, self.sequence_length, len(self._action_sizes)), "i8"),
                ("seq_len", (n,), "i8"),
                ("seq_rewards", (n, self.sequence_length), "f8"),
                ("seq_steps", (n,), "i8"),
                ("sem", (_SEM_STRIDE,), "u1"),
            ]
        )
        res = self._resources
        res.buffers = SharedBuffers.create(layout)
        a = res.buffers.arrays
        res.handshake = Handshake(a["sem"], a["counter"], a["queue"] if a["queue"].size else None)
        res.handshake.init()
        self._a = a
        self._io = BatchIO(
            a["actions"],
            a["cmd"],
            a["slot"],
            a["status"],
            a["rewards"],
            a["terminated"],
            a["truncated"],
        )
        # One index per env (the discrete action sets) takes step's staging fast path.
        one_index = self._action_mode == fr_actions.MODE_INDEX and len(self._action_sizes) == 1
        self._index_high = int(self._action_sizes[0]) if one_index else None
        self._action_high = np.asarray(self._action_sizes)
        channels = prep.frame_shape(screen_shape)[2] if self.observe else 0
        views = (
            stack_views(a["obs"], prep.frame_stack, channels, prep.channels_first)
            if self.observe
            else [a["obs"]]
        )
        for v in views:
            v.flags.writeable = False
        self._stack_views = views
        self._slot = 0
        self.reset_stats()

    def _gather(self, kind: str, deadline: float) -> list:
        """Collect one ``kind`` message from every worker during startup."""
        res = self._resources
        answers: dict[int, Any] = {}
        waiting = dict(enumerate(res.conns))
        while waiting:
            ready = mp.connection.wait(list(waiting.values()), timeout=_LIVENESS_POLL_S)
            for conn in ready:
                i = next(j for j, c in waiting.items() if c is conn)
                try:
                    msg = conn.recv()
                except EOFError:
                    raise self._died(i, f"while starting (waiting for {kind!r})") from None
                if msg[0] == "error":
                    raise _reraise(msg)
                answers[i] = msg[2] if len(msg) > 2 else None
                del waiting[i]
            for i in list(waiting):
                if res.procs[i].exitcode is not None and not res.conns[i].poll():
                    raise self._died(i, "while starting")
            if waiting and time.monotonic() > deadline:
                raise WorkerTimeoutError(
                    f"Workers {sorted(waiting)} did not start within the startup timeout",
                    index=min(waiting),
                )
        return [answers[i] for i in range(len(res.conns))]

    # -- the gymnasium / baselines interface -----------------------------------------------

    def reset(
        self, *, seed: int | Sequence[int] | None = None, options: dict | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env (or those in ``options["reset_mask"]``).

        Args:
            seed: an int seeds env ``i`` with ``seed + i``; a list gives one seed per env.
                The seed drives the sticky-frame draws; the emulators are deterministic.
            options: ``{"reset_mask": bool array of shape (num_envs,)}`` resets only those envs.

        Returns:
            ``(obs, infos)``; ``obs`` aliases shared memory unless ``copy=True``.
        """
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def reset_async(
        self, seed: int | Sequence[int] | None = None, options: dict | None = None
    ) -> None:
        """Send the reset command and return at once; ``reset_wait`` collects the result."""
        self._check_idle("reset_async")
        self._check_lock_step("reset")
        mask = self._reset_mask(options)
        seeds = self._seeds(seed)
        a = self._a
        idx = np.flatnonzero(mask)
        a["arg"][idx] = seeds[idx]
        self._env_seeds[idx] = seeds[idx]
        a["cmd"][idx] = CMD_RESET
        self._dispatch(idx)
        self._pending_mask = mask
        self._state = State.WAITING_RESET

    def reset_wait(self, timeout: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Wait for the reset sent by ``reset_async``."""
        self._check_waiting(State.WAITING_RESET, "reset_wait", "reset_async")
        self._wait(timeout, "reset")
        self._state = State.IDLE
        self._needs_reset[self._pending_mask] = False
        return self._observations(), self._infos(done=None)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its row of ``actions``.

        Args:
            actions: one row per env, as ``action_space`` says: buttons ``(num_envs,
                num_buttons)`` of 0/1 (any integer or bool dtype) for ``"filtered"``, indices
                ``(num_envs,)`` for the discrete sets, ``(num_envs, groups)`` for
                ``"multi_discrete"``.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)``: obs ``(num_envs, *obs_shape)``
            uint8 (a read-only view of shared memory unless ``copy=True``: it changes on the
            next call), rewards float64, terminated/truncated bool, and infos as a dict of
            arrays with ``_name`` masks (gymnasium's convention).
        """
        self.step_async(actions)
        return self.step_wait()

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions and return at once; ``step_wait`` collects the results."""
        self._check_idle("step_async")
        self._check_lock_step("step")
        self._check_no_reset_due()
        # The frame stack's ring advances one slot per step (fastretro/runtime/preprocess.py).
        slot = (self._slot + 1) % len(self._stack_views)
        if not self._stage(actions, slot):
            a = self._a
            np.copyto(a["actions"], self._check_actions(actions), casting="unsafe")
            a["slot"][:] = slot
            a["cmd"][:] = CMD_STEP
        self._slot = slot
        self._dispatch(None)
        self._state = State.WAITING_STEP

    def step_wait(
        self, timeout: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Wait for the step sent by ``step_async``; see :meth:`step` for what it returns."""
        self._check_waiting(State.WAITING_STEP, "step_wait", "step_async")
        self._wait(timeout, "step")
        self._state = State.IDLE
        return self._collect_step()

    def _collect_step(
        self,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        rewards = np.empty(n)
        terminated, truncated = np.empty(n, np.uint8), np.empty(n, np.uint8)
        ended = self._io.collect(rewards, terminated, truncated)
        terminated, truncated = terminated.view(bool), truncated.view(bool)
        if not (ended or self._restarted.any()):  # the common case: nothing more to account for
            return self._observations(), rewards, terminated, truncated, self._infos(None)
        restarted = self._restarted.copy()
        self._restarted[:] = False
        # A restarted env's episode was cut short by the crash; its new episode has begun.
        truncated |= restarted
        done = terminated | truncated
        if self.autoreset_mode == AutoresetMode.DISABLED:
            self._needs_reset |= done & ~restarted
        if self.snapshot_best:
            self._snapshot_fresh |= done & ~restarted
        infos = self._infos(done if self.autoreset_mode == AutoresetMode.SAME_STEP else None)
        if restarted.any():
            infos["worker_restarted"] = restarted
            infos["_worker_restarted"] = restarted.copy()
        return self._observations(), rewards, terminated, truncated, infos

    # -- sequences: many steps per round trip -----------------------------------------------

    def step_sequences(
        self, actions: np.ndarray, lengths: Sequence[int] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Run env ``i`` through ``actions[i, :lengths[i]]``, one step per action, in its worker.

        Each step is what :meth:`step` does with that action (sticky frames, autoreset and
        ``max_episode_steps`` included); a sequence stops early at the step that ends its
        episode. Needs ``sequence_length`` at construction; lock-step mode (async mode:
        :meth:`send_sequences`).

        Args:
            actions: ``(num_envs, L, ...)``: row ``i`` holds env ``i``'s actions, each shaped
                as one row of :meth:`step`'s actions (so ``(num_envs, L)`` for the discrete
                sets); ``L`` at least ``max(lengths)``.
            lengths: how many of its actions each env runs, each in ``[1, sequence_length]``.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)`` as from :meth:`step`, of each
            sequence's last step, except ``rewards``: each sequence's total. ``infos`` also
            holds ``"sequence_steps"`` (steps each env ran) and ``"sequence_rewards"``
            (``(num_envs, sequence_length)``, each step's reward, 0 past the steps run). A
            worker that dies during a sequence raises, whatever ``on_worker_failure`` says;
            the wait allows ``step_timeout`` per step of the longest sequence.
        """
        self._check_idle("step_sequences")
        self._check_lock_step("step_sequences")
        self._check_no_reset_due()
        a = self._a
        flat, lens = self._check_sequences(actions, lengths, self.num_envs)
        a["seq_actions"][:, : flat.shape[1]] = flat
        a["seq_len"][:] = lens
        a["cmd"][:] = CMD_SEQUENCE
        self._dispatch(None)
        self._state = State.WAITING_STEP
        self._wait(self.step_timeout * int(lens.max()), "step_sequences")
        self._state = State.IDLE
        obs, rewards, terminated, truncated, infos = self._collect_step()
        infos["sequence_steps"] = a["seq_steps"].copy()
        infos["_sequence_steps"] = np.ones(self.num_envs, dtype=bool)
        infos["sequence_rewards"] = self._sequence_rewards(slice(None), a["seq_steps"])
        infos["_sequence_rewards"] = np.ones(self.num_envs, dtype=bool)
        return obs, rewards, terminated, truncated, infos

    def send_sequences(
        self,
        actions: np.ndarray,
        lengths: Sequence[int] | np.ndarray,
        env_ids: Sequence[int] | np.ndarray,
    ) -> None:
        """Async mode: start each env of ``env_ids`` on its sequence (see :meth:`step_sequences`).

        ``recv`` returns the env when its sequence is over, with the sequence's total reward
        and ``infos["sequence_steps"]`` / ``infos["sequence_rewards"]`` (for envs ``send``
        stepped once instead: 1 step, its reward; ``infos["_sequence_steps"]`` False).

        Args:
            actions: ``(len(env_ids), L, ...)``, row ``j`` for ``env_ids[j]``.
            lengths: one length per env of ``env_ids``, each in ``[1, sequence_length]``.
            env_ids: envs returned by ``recv`` and not sent since.
        """
        self._check_async("send_sequences")
        ids = self._check_env_ids(env_ids)
        flat, lens = self._check_sequences(actions, lengths, len(ids))
        a = self._a
        a["seq_actions"][ids, : flat.shape[1]] = flat
        a["seq_len"][ids] = lens
        a["cmd"][ids] = CMD_SEQUENCE
        self._in_flight[ids] = True
        self._wake()

    def _check_sequences(
        self, actions: Any, lengths: Any, rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``rows`` sequences: ``(actions as (rows, L, width) int64, lengths)``."""
        k = self.sequence_length
        if not k:
            raise InvalidArgumentError(
                "Sequences need VecRetroEnv(..., sequence_length=K, observe=False): this pool "
                "was made with sequence_length=0"
            )
        lens = np.asarray(lengths)
        if lens.shape != (rows,) or lens.dtype.kind not in "iu":
            raise InvalidArgumentError(
                f"Expected lengths to be {rows} ints (one per env), got {lens.dtype} array of "
                f"shape {lens.shape}"
            )
        out_of_range = (lens < 1) | (lens > k)
        if out_of_range.any():
            j = int(np.argmax(out_of_range))
            raise InvalidArgumentError(
                f"Expected sequence lengths in [1, {k}] (sequence_length), got {lens[j]} at row {j}"
            )
        arr = np.asarray(actions)
        width = len(self._action_sizes)
        row = () if self._action_mode == fr_actions.MODE_INDEX else (width,)
        longest = int(lens.max())
        if (
            arr.ndim != 2 + len(row)
            or arr.shape[0] != rows
            or arr.shape[2:] != row
            or (arr.shape[1] < longest)
        ):
            shape = ", ".join(["rows", "L", *(["width"] if row else [])])
            raise ActionError(
                f"Expected sequence actions of shape ({shape}) = ({rows}, L >= {longest}"
                f"{', ' + str(width) if row else ''}), got {arr.shape}"
            )
        if arr.dtype.kind not in ("biu" if self._action_mode == fr_actions.MODE_BITS else "iu"):
            raise ActionError(f"Expected integer sequence actions, got {arr.dtype}")
        flat = arr[:, :longest].reshape(rows, longest, width).astype(np.int64, copy=False)
        high = 2 if self._action_mode == fr_actions.MODE_BITS else self._action_high
        used = (np.arange(longest) < lens[:, None])[..., None]
        bad = used & ((flat < 0) | (flat >= high))
        if bad.any():
            r, t, col = np.argwhere(bad)[0]
            limit = high if np.ndim(high) == 0 else high[col]
            raise ActionError(
                f"Expected sequence actions in [0, {limit}) for this action set, got "
                f"{flat[r, t, col]} at row {r}, step {t}" + (f", column {col}" if width > 1 else "")
            )
        return flat, lens.astype(np.int64)

    def _sequence_rewards(self, rows: Any, steps: np.ndarray) -> np.ndarray:
        # Only the steps run hold this sequence's rewards; the rest are an older sequence's.
        out = self._a["seq_rewards"][rows].copy()
        out[np.arange(out.shape[1]) >= np.asarray(steps)[:, None]] = 0.0
        return out

    def _check_no_reset_due(self) -> None:
        if self.autoreset_mode == AutoresetMode.DISABLED and self._needs_reset.any():
            done = np.flatnonzero(self._needs_reset).tolist()
            raise StateMachineError(
                f"Envs {done} ended their episode and autoreset is DISABLED: reset them with "
                "reset(options={'reset_mask': mask}) before stepping"
            )

    # -- snapshots: go on from where an episode did best --------------------------------------

    def best_snapshot(self, env_id: int) -> Snapshot:
        """Where env ``env_id``'s last finished episode first reached its highest return.

        Needs ``snapshot_best=True``. Available from the step that ended the episode until
        the env's next episode ends (or a :meth:`restore` into that env).
        """
        self._check_idle("best_snapshot")
        i = self._check_snapshot_env(env_id, "best_snapshot")
        a = self._a
        if not self._snapshot_fresh[i]:
            raise StateMachineError(
                f"Env {i} has no snapshot: it has not finished an episode since the pool "
                "started or since its last restore"
            )
        n = int(a["snap_len"][i])
        return Snapshot(
            self.specs[i].game,
            a["snap"][i, :n].tobytes(),
            int(a["snap_step"][i]),
            float(a["snap_return"][i]),
            a["snap_screen"][i].copy() if self.observe else None,
        )

    def restore(self, snapshots: Mapping[int, Snapshot]) -> tuple[np.ndarray, dict[str, Any]]:
        """Load ``{env_id: Snapshot}`` into those envs; their episodes go on from there.

        Each env continues from the snapshot's step count and return (its reward deltas start
        from the loaded memory; ``allow_backtracking`` starts over from there). Only sound
        where the worker evaluates the scenario from emulator memory
        (``scenario_engines[i] == "fastretro"``): stable-retro's save states do not carry a
        Lua script's variables, so those envs are refused. Async mode: :meth:`async_restore`.

        Returns:
            ``(obs, infos)`` of every env, as :meth:`reset` (the others unchanged).
        """
        self._check_idle("restore")
        self._check_lock_step("restore", instead="async_restore, then recv")
        mask = self._stage_snapshots(snapshots, "restore")
        a = self._a
        idx = np.flatnonzero(mask)
        a["cmd"][idx] = CMD_RESTORE
        self._dispatch(idx)
        # Collected as a reset: the restored envs are in a running episode again.
        self._pending_mask = mask
        self._state = State.WAITING_RESET
        return self.reset_wait()

    def async_restore(self, snapshots: Mapping[int, Snapshot]) -> None:
        """Async mode: load ``{env_id: Snapshot}`` into those envs, as :meth:`restore` does.

        The envs must not be running (``recv`` them first). Each then shows up in a ``recv``
        batch as after :meth:`async_reset`: its observation is the snapshot's screen, its reward
        0, and no step is counted; its episode goes on from the snapshot's step and return.
        """
        self._check_async("async_restore")
        mask = self._stage_snapshots(snapshots, "async_restore")
        idx = np.flatnonzero(mask)
        self._a["cmd"][idx] = CMD_RESTORE
        self._in_flight[idx] = True
        self._wake()

    def _stage_snapshots(self, snapshots: Mapping[int, Snapshot], call: str) -> np.ndarray:
        """Check ``{env_id: Snapshot}`` and write it into the envs' slots; their mask."""
        if not isinstance(snapshots, Mapping) or not snapshots:
            raise InvalidArgumentError(
                f"Expected a non-empty {{env_id: Snapshot}} mapping, got {snapshots!r:.80}"
            )
        a = self._a
        for env_id, snap in snapshots.items():
            i = self._check_snapshot_env(env_id, call)
            if not isinstance(snap, Snapshot):
                raise InvalidArgumentError(
                    f"Expected a Snapshot for env {i}, got {type(snap).__name__}"
                )
            if snap.game != self.specs[i].game:
                raise InvalidArgumentError(
                    f"Cannot restore a snapshot of {snap.game} into env {i}, which runs "
                    f"{self.specs[i].game}"
                )
            if self.scenario_engines[i] != "fastretro":
                raise InvalidArgumentError(
                    f"Cannot restore env {i}: stable-retro evaluates its scenario, and a save "
                    f"state does not carry the scenario's own variables "
                    f"({self.specs[i].scenario_plan_why_not or 'scenario_engine=stable-retro'})"
                )
            if self._recording:
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
            if len(snap.state) > a["snap"].shape[1]:
                raise InvalidArgumentError(
                    f"Expected a save state of at most {a['snap'].shape[1]} bytes for env {i}, "
                    f"got {len(snap.state)}"
                )
        mask = np.zeros(self.num_envs, dtype=bool)
        for env_id, snap in snapshots.items():
            i = int(env_id)
            n = len(snap.state)
            a["snap"][i, :n] = np.frombuffer(snap.state, np.uint8)
            a["snap_len"][i] = n
            a["snap_step"][i] = snap.episode_step
            a["snap_return"][i] = snap.episode_return
            if self.observe:
                a["snap_screen"][i] = snap.screen
            mask[i] = True
        self._snapshot_fresh[mask] = False
        return mask

    def _check_snapshot_env(self, env_id: Any, call: str) -> int:
        if not self.snapshot_best:
            raise InvalidArgumentError(f"{call} needs VecRetroEnv(..., snapshot_best=True)")
        if (
            isinstance(env_id, bool)
            or not isinstance(env_id, (int, np.integer))
            or not 0 <= env_id < self.num_envs
        ):
            raise InvalidArgumentError(
                f"Expected an env_id in [0, {self.num_envs}), got {env_id!r}"
            )
        if self.batch_size is not None and self._in_flight[env_id]:
            # Its worker writes the snapshot slot when an episode ends.
            raise StateMachineError(
                f"Cannot call {call} for env {env_id} while it is running: recv it first"
            )
        return int(env_id)

    # -- async mode (batch_size): EnvPool's send/recv ----------------------------------------

    def async_reset(self, seed: int | Sequence[int] | None = None) -> None:
        """Async mode: reset every env; each then shows up in a ``recv`` batch.

        Args:
            seed: as in :meth:`reset`.
        """
        self._check_async("async_reset")
        if self._in_flight.any():
            raise StateMachineError(
                f"Cannot call async_reset while envs {np.flatnonzero(self._in_flight).tolist()} "
                "are running: recv them first"
            )
        a = self._a
        a["arg"][:] = self._seeds(seed)
        a["cmd"][:] = CMD_RESET
        self._in_flight[:] = True
        self._batch_ready = self._resources.handshake.arm(self.batch_size)
        self._wake()

    def send(self, actions: np.ndarray, env_ids: Sequence[int] | np.ndarray) -> None:
        """Async mode: start one step of each env in ``env_ids`` with its row of ``actions``.

        Args:
            actions: one action per env in ``env_ids``, in the same order (shapes as in
                :meth:`step`, with ``len(env_ids)`` rows).
            env_ids: envs returned by ``recv`` and not sent since.
        """
        self._check_async("send")
        if not self._send_staged(actions, env_ids):
            ids = self._check_env_ids(env_ids)
            checked = self._check_actions(actions, len(ids))
            a = self._a
            a["actions"][ids] = checked
            k = len(self._stack_views)
            self._slots[ids] = (self._slots[ids] + 1) % k
            a["slot"][ids] = self._slots[ids]
            a["cmd"][ids] = CMD_STEP
            self._in_flight[ids] = True
        self._wake()

    def recv(
        self, timeout: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Async mode: wait for the first ``batch_size`` envs to finish; return their results.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)`` for ``batch_size`` envs, with
            ``infos["env_id"]`` saying which, in the order they finished. All arrays are new
            (not views of shared memory): the workers keep writing while you hold them.
        """
        self._check_async("recv")
        m = self.batch_size
        running = int(self._in_flight.sum())
        if running < m:
            raise StateMachineError(
                f"Cannot call recv with {running} envs running and batch_size={m}: send actions "
                "for the envs of the last batch first"
            )
        hs = self._resources.handshake
        if not self._batch_ready:
            if timeout is None:  # a sequence of L steps may take L steps' time
                timeout = self.step_timeout * max(1, int(self._a["seq_len"].max()))
            self._wait(timeout, "recv")
        ids = np.empty(m, dtype=np.int32)
        hs.take(m, ids)
        self._batch_ready = hs.arm(m)
        rewards = np.empty(m)
        terminated, truncated = np.empty(m, np.uint8), np.empty(m, np.uint8)
        ended = self._io.collect(rewards, terminated, truncated, ids, self._in_flight_u8)
        terminated, truncated = terminated.view(bool), truncated.view(bool)
        a = self._a
        if len(self._stack_views) == 1:
            obs = a["obs"][ids]
        else:
            obs = np.empty((m, *self._obs_shape), np.uint8)
            for j, i in enumerate(ids):
                copy_into(self._stack_views[self._slots[i]][i], obs[j])
        done = (terminated | truncated) if ended else None
        if self.snapshot_best and ended:
            self._snapshot_fresh[ids[done]] = True
        infos = self._infos(done if self.autoreset_mode == AutoresetMode.SAME_STEP else None, ids)
        infos["env_id"] = ids.astype(np.int64)
        if self.sequence_length:
            self._add_sequence_infos(infos, ids, rewards)
        return obs, rewards, terminated, truncated, infos

    def _add_sequence_infos(self, infos: dict, ids: np.ndarray, rewards: np.ndarray) -> None:
        # seq_len holds what send_sequences gave each env and is cleared here, so 0 marks an env
        # that ran a plain step: it reports a sequence of one.
        seq_len = self._a["seq_len"]
        ran = seq_len[ids] > 0
        steps = np.where(ran, self._a["seq_steps"][ids], 1)
        per_step = self._sequence_rewards(ids, steps)
        per_step[~ran, 0] = rewards[~ran]
        seq_len[ids] = 0
        infos["sequence_steps"] = steps
        infos["_sequence_steps"] = ran
        infos["sequence_rewards"] = per_step
        infos["_sequence_rewards"] = ran.copy()

    def _check_lock_step(self, call: str, instead: str = "async_reset, send and recv") -> None:
        if self.batch_size is not None:
            raise StateMachineError(
                f"Cannot call {call}: this pool is in async mode (batch_size={self.batch_size}); "
                f"use {instead}"
            )

    def _check_async(self, call: str) -> None:
        self._check_open(call)
        if self.batch_size is None:
            raise StateMachineError(
                f"Cannot call {call}: this pool is in lock-step mode; create it with "
                "batch_size=M for send/recv"
            )

    def _check_env_ids(self, env_ids: Any) -> np.ndarray:
        ids = np.asarray(env_ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or ids.size == 0:
            raise InvalidArgumentError(
                f"Expected env_ids to be a non-empty 1-D array of ints, got {ids.dtype} array "
                f"of shape {ids.shape}"
            )
        if ids.min() < 0 or ids.max() >= self.num_envs:
            raise InvalidArgumentError(
                f"Expected env_ids in [0, {self.num_envs}), got {ids.tolist()}"
            )
        if len(np.unique(ids)) != len(ids):
            raise InvalidArgumentError(f"Expected distinct env_ids, got {ids.tolist()}")
        busy = ids[self._in_flight[ids]]
        if busy.size:
            raise StateMachineError(
                f"Cannot send to envs {busy.tolist()}: they are still running (recv them first)"
            )
        return ids.astype(np.intp)

    def close(self, *, timeout: float = 5.0, **kwargs: Any) -> None:
        """Stop every worker and free the shared memory. Idempotent.

        Args:
            timeout: seconds to wait for the workers to exit on their own before they are
                killed; close returns within about ``timeout + 1`` seconds.
            **kwargs: accepted for compatibility with ``VectorEnv.close``; unused.
        """
        if self._closed:
            return
        self._closed = True
        self._state = State.IDLE
        self._stack_views = []
        self._a = {}
        if self._resources is not None:
            self._finalizer.detach()
            self._resources.shutdown(timeout=timeout)

    def stats(self) -> PoolStats:
        """Where the pool's time went since it started or since :meth:`reset_stats`.

        The counters live in shared memory and are kept by the workers all the time (~1.5 us of
        clock reads per step, ext/worker_loop.pyx); this call only copies them. See
        :class:`fastretro.runtime.stats.PoolStats` for the fields.
        """
        self._check_open("stats")
        pids, cpu = self._worker_cpu()
        # A restarted worker is a new process: its CPU time counts from its start.
        base = np.where(pids == self._cpu_base_pids, self._cpu_base, 0.0)
        return PoolStats.from_counters(
            self._a["timing"] - self._timing_base,
            cpu - base,
            time.monotonic_ns() - self._stats_start_ns,
            self._parent_wait_ns,
        )

    def reset_stats(self) -> None:
        """Start :meth:`stats` counting from now."""
        self._timing_base = self._a["timing"].copy()
        self._cpu_base_pids, self._cpu_base = self._worker_cpu()
        self._stats_start_ns = time.monotonic_ns()
        self._parent_wait_ns = 0

    def _worker_cpu(self) -> tuple[np.ndarray, np.ndarray]:
        procs = self._resources.procs
        pids = np.array([p.pid or -1 for p in procs], dtype=np.int64)
        return pids, np.array([process_cpu_seconds(pid) for pid in pids])

    def __enter__(self) -> VecRetroEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (or construction failed)."""
        return self._closed

    # -- internals ---------------------------------------------------------------------------

    def _dispatch(self, idx: np.ndarray | None) -> None:
        self._resources.handshake.begin(self.num_envs if idx is None else len(idx))
        self._wake()

    def _wake(self) -> None:
        start_ns = time.monotonic_ns()
        try:
            self._resources.handshake.wake()
            # Waking N workers on fewer cores often preempts the parent inside the wake syscall
            # until cores free up (measured: ~6 ms of a 10 ms step with 8 envs on 2 cores): time
            # spent waiting for the emulators too.
            self._parent_wait_ns += time.monotonic_ns() - start_ns
        except BaseException as exc:
            # A Ctrl-C that lands here (the parent is often descheduled in the syscall) leaves
            # workers running a command nobody will collect: free them now, as _wait does.
            self._failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.close(timeout=1.0)
            raise

    def _wait(self, timeout: float | None, what: str) -> None:
        res = self._resources
        timeout = self.step_timeout if timeout is None else timeout
        start_ns = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        try:
            while not res.handshake.wait_parent(_LIVENESS_POLL_S):
                for i, proc in enumerate(res.procs):
                    if proc.exitcode is not None:
                        if self.on_worker_failure == "restart" and what == "step":
                            if proc.exitcode < 0:  # killed, maybe in the middle of a log record
                                self._renew_log_queue()
                            self._restart_worker(i)
                        else:
                            raise self._died(i, f"during {what}")
                if time.monotonic() > deadline:
                    busy = np.flatnonzero(self._a["cmd"] != 0).tolist()
                    if busy and self.on_worker_failure == "restart" and what == "step":
                        # A worker stuck in its core is handled like a crashed one: killed,
                        # then restarted by the liveness check above.
                        for i in busy:
                            log.warning("worker %d stuck for %g s; killing it", i, timeout)
                            res.procs[i].kill()
                            res.procs[i].join(5.0)
                        deadline = time.monotonic() + timeout
                        continue
                    raise WorkerTimeoutError(
                        f"Workers {busy} did not finish {what} within {timeout:g} s; "
                        "the pool has been closed",
                        index=busy[0] if busy else None,
                    )
            i = self._io.first_failed()
            if i >= 0:
                msg = res.conns[i].recv() if res.conns[i].poll(1.0) else None
                if msg is None:
                    raise WorkerError(f"Worker {i} failed during {what}", index=i)
                raise _reraise(msg)
            self._parent_wait_ns += time.monotonic_ns() - start_ns
        except BaseException as exc:
            # KeyboardInterrupt included: a half-finished batch leaves the pool unusable, so
            # free the workers and the shared memory now rather than at exit.
            self._failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.close(timeout=1.0)  # a worker may be hung: do not wait the full 5 s for it
            raise

    def _start_worker(self, i: int) -> None:
        """Start worker ``i`` (at construction, or in place of a dead one)."""
        ctx, target, opts, log_queue = self._spawn_args
        res = self._resources
        parent_conn, child_conn = ctx.Pipe()
        proc = ctx.Process(
            target=target,
            name=f"fastretro-worker-{i}",
            args=(i, self.specs[i], opts, child_conn, log_queue, os.getpid()),
            daemon=True,
        )
        proc.start()
        child_conn.close()
        res.procs[i], res.conns[i] = proc, parent_conn

    def _renew_log_queue(self) -> None:
        """Workers started from now on log to a new queue (see :func:`fastretro.runtime.logs.retire`)."""
        ctx, target, opts, _ = self._spawn_args
        logs.retire(ctx.get_start_method())
        self._spawn_args = (ctx, target, opts, logs.worker_log_queue(ctx))

    def _restart_worker(self, i: int) -> None:
        """Replace dead worker ``i`` and have it start a new episode within the pending step."""
        now = time.monotonic()
        if now - self._restart_times[i] < RESTART_WINDOW_S:
            raise self._died(
                i, f"again within {RESTART_WINDOW_S:g} s of its restart (not restarting it)"
            )
        res, a = self._resources, self._a
        old = res.procs[i]
        log.warning(
            "worker %d (pid %d) died (exit code %s); restarting it", i, old.pid, old.exitcode
        )
        res.conns[i].close()
        old.join(1.0)
        # The dead worker still counts in the batch only if it never reported done; it cleared
        # its command word just before doing so.
        if a["cmd"][i] == 0:
            res.handshake.arm(1)
        self._start_worker(i)
        deadline = now + self._startup_timeout
        self._gather_one(i, "ready", deadline)
        res.conns[i].send(("attach", res.buffers.layout, res.buffers.name))
        self._gather_one(i, "attached", deadline)
        a["status"][i] = 0
        a["arg"][i] = self._env_seeds[i]
        a["cmd"][i] = CMD_RESET
        res.handshake.wake()
        self._restart_times[i] = time.monotonic()
        self._restarted[i] = True
        self.worker_restarts += 1

    def _gather_one(self, i: int, kind: str, deadline: float) -> None:
        conn, proc = self._resources.conns[i], self._resources.procs[i]
        while not conn.poll(_LIVENESS_POLL_S):
            if proc.exitcode is not None:
                raise self._died(i, f"while restarting (waiting for {kind!r})")
            if time.monotonic() > deadline:
                raise WorkerTimeoutError(
                    f"Worker {i} did not restart within the startup timeout", index=i
                )
        msg = conn.recv()
        if msg[0] == "error":
            raise _reraise(msg)

    def _died(self, i: int, when: str) -> WorkerDiedError:
        code = self._resources.procs[i].exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        pid = self._resources.procs[i].pid
        return WorkerDiedError(f"Worker {i} (pid {pid}) {how} {when}; the pool has been closed", i)

    def _observations(self) -> np.ndarray:
        view = self._stack_views[self._slot]
        if not self.copy:
            return view
        out = np.empty(view.shape, np.uint8)
        copy_into(view, out)
        return out

    def _infos(self, done: np.ndarray | None, ids: np.ndarray | None = None) -> dict[str, Any]:
        """Infos of every env, or of the envs ``ids`` (async batches); ``done`` is per row."""
        rows = slice(None) if ids is None else ids
        a = self._a
        # One copy of each block, handed out as column views: the values outlive the step.
        has = self._env_has_info[rows].copy()
        info, final = a["info"][rows].copy(), a["final_info"][rows]
        infos: dict[str, Any] = {}
        for j, name in enumerate(self.info_names):
            infos[name] = info[:, j]
            infos[f"_{name}"] = has[:, j]
        if done is not None and done.any():
            final_obs = np.empty(len(done), dtype=object)
            final_info: dict[str, Any] = {}
            all_final_obs = a["final_obs"][rows]
            for i in np.flatnonzero(done):
                final_obs[i] = all_final_obs[i].copy()
            for j, name in enumerate(self.info_names):
                final_info[name] = final[:, j].copy()
                final_info[f"_{name}"] = has[:, j] & done
            infos["final_obs"] = final_obs
            infos["_final_obs"] = done.copy()
            infos["final_info"] = final_info
            infos["_final_info"] = done.copy()
        return infos

    def _check_actions(self, actions: Any, n: int | None = None) -> np.ndarray:
        """Validate ``n`` rows of actions (default: one per env); shape them as the shared array."""
        arr = np.asarray(actions)
        n = self.num_envs if n is None else n
        if self._action_mode == fr_actions.MODE_BITS:
            return self._check_buttons(arr, n)
        if self._action_mode == fr_actions.MODE_INDEX:
            expected, what = (n,), f"({self._rows_name()},)"
        else:
            expected, what = (n, len(self._action_sizes)), f"({self._rows_name()}, groups)"
        if arr.shape != expected:
            raise ActionError(f"Expected actions of shape {expected} {what}, got {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise ActionError(f"Expected an integer dtype for action indices, got {arr.dtype}")
        arr = arr.reshape(n, -1)
        high = self._action_high
        bad = (arr < 0) | (arr >= high)
        if bad.any():
            env, col = np.argwhere(bad)[0]
            where = f"env {env}" if arr.shape[1] == 1 else f"env {env}, group {col}"
            raise ActionError(
                f"Expected actions in [0, {high[col]}) for this action set, got "
                f"{arr[env, col]} at {where}"
            )
        return arr

    def _fast_form(self, actions: Any, rows: int) -> np.ndarray | None:
        """``actions`` as the staging fast paths take them, or None where they do not.

        They take ``rows`` int64 indices (one-column action sets) or ``rows`` rows of uint8 or
        bool buttons. Anything else (other dtypes or shapes) goes through ``_check_actions``,
        which converts it or raises the error that says what is wrong.
        """
        if type(actions) is not np.ndarray:
            return None
        if self._index_high is not None:
            ok = actions.dtype == np.int64 and actions.shape == (rows,)
            return actions if ok else None
        if self._action_mode != fr_actions.MODE_BITS:
            return None
        if actions.dtype == np.bool_:
            actions = actions.view(np.uint8)
        elif actions.dtype != np.uint8:
            return None
        return actions if actions.shape == (rows, len(self.buttons)) else None

    def _stage(self, actions: Any, slot: int) -> bool:
        """Step's fast path: stage every env's action in one C loop; False where it cannot.

        The Python checks then run, and raise for a value out of range.
        """
        arr = self._fast_form(actions, self.num_envs)
        if arr is None:
            return False
        by_index = self._index_high is not None
        buttons, indices = (None, arr) if by_index else (arr, None)
        return self._io.stage(buttons, indices, self._index_high or 0, slot, CMD_STEP) < 0

    def _send_staged(self, actions: Any, env_ids: Any) -> bool:
        """Send's fast path: stage int64 ``env_ids`` in one C loop; False where it cannot.

        The Python checks then run, and raise what is wrong (a repeated id, one in flight...).
        """
        if type(env_ids) is not np.ndarray or env_ids.dtype != np.int64 or env_ids.ndim != 1:
            return False
        arr = self._fast_form(actions, len(env_ids))
        if arr is None:
            return False
        by_index = self._index_high is not None
        buttons, indices = (None, arr) if by_index else (arr, None)
        return self._io.send_rows(
            env_ids,
            buttons,
            indices,
            self._index_high or 0,
            self._slots,
            len(self._stack_views),
            self._in_flight_u8,
            CMD_STEP,
        )

    def _rows_name(self) -> str:
        # What one row of actions stands for, in error messages.
        return "num_envs" if self.batch_size is None else "len(env_ids)"

    def _check_buttons(self, arr: np.ndarray, n: int) -> np.ndarray:
        expected = (n, len(self.buttons))
        if arr.shape != expected:
            raise ActionError(
                f"Expected actions of shape {expected} ({self._rows_name()}, buttons), "
                f"got {arr.shape}"
            )
        if arr.dtype.kind not in "biu":
            raise ActionError(
                f"Expected an integer or bool dtype for button actions (0 or 1), got {arr.dtype}"
            )
        if arr.dtype.kind != "b" and (arr.max() > 1 or arr.min() < 0):
            bad = np.argwhere((arr < 0) | (arr > 1))[0]
            raise ActionError(
                f"Expected button actions of 0 or 1, got {arr[tuple(bad)]} at env {bad[0]}, "
                f"button {bad[1]} ({self.buttons[bad[1]]})"
            )
        return arr

    def _check_open(self, call: str) -> None:
        if self._closed:
            why = f" after a failure ({self._failure})" if self._failure else ""
            raise ClosedError(f"Cannot call {call}: the pool is closed{why}")

    def _check_idle(self, call: str) -> None:
        self._check_open(call)
        if self._state is not State.IDLE:
            pending = f"{self._state.value}_wait"
            raise StateMachineError(
                f"Cannot call {call} while a {self._state.value} is pending: call {pending} first"
            )

    def _check_waiting(self, state: State, call: str, sender: str) -> None:
        self._check_open(call)
        if self._state is not state:
            raise StateMachineError(f"Cannot call {call} without a pending {sender}")

    def _reset_mask(self, options: dict | None) -> np.ndarray:
        if options is None or "reset_mask" not in options:
            return np.ones(self.num_envs, dtype=bool)
        mask = options["reset_mask"]
        if (
            not isinstance(mask, np.ndarray)
            or mask.dtype != np.bool_
            or mask.shape != (self.num_envs,)
        ):
            got = (
                f"{mask.dtype} array of shape {mask.shape}"
                if isinstance(mask, np.ndarray)
                else type(mask).__name__
            )
            raise InvalidArgumentError(
                f"Expected options['reset_mask'] to be a bool array of shape ({self.num_envs},), "
                f"got {got}"
            )
        if not mask.any():
            raise InvalidArgumentError("Expected options['reset_mask'] to select at least one env")
        return mask

    def _seeds(self, seed: int | Sequence[int] | None) -> np.ndarray:
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        if seed is None:
            return np.full(self.num_envs, -1, dtype=np.int64)
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if seed < 0:
                raise InvalidArgumentError(f"Expected seed >= 0, got {seed}")
            return np.arange(self.num_envs, dtype=np.int64) + int(seed)
        seeds = list(seed) if isinstance(seed, (list, tuple, np.ndarray)) else None
        if seeds is None or len(seeds) != self.num_envs:
            raise InvalidArgumentError(
                f"Expected seed to be None, an int or a list of num_envs={self.num_envs} ints, "
                f"got {seed!r}"
            )
        out = np.asarray(seeds, dtype=np.int64)
        if (out < 0).any():
            raise InvalidArgumentError(f"Expected seeds >= 0, got {seeds}")
        return out

    def __repr__(self) -> str:
        games = sorted({s.game for s in self.specs}) if hasattr(self, "specs") else []
        return f"VecRetroEnv({', '.join(games)}, num_envs={getattr(self, 'num_envs', '?')})"

    def __del__(self) -> None:
        # The finalizer does the work; this only keeps gymnasium's VectorEnv.__del__ away
        # from a half-constructed object.
        pass


class _Resources:
    """What a pool must free: worker processes, their pipes, the segment and the semaphores.

    Kept apart from the pool so that ``weakref.finalize`` can free them when the pool is
    garbage-collected or the interpreter exits without ``close()``.
    """

    def __init__(self) -> None:
        self.procs: list = []
        self.conns: list = []
        self.buffers: SharedBuffers | None = None
        self.handshake = None
        #: The workers' start method; its log queue is retired if a worker was killed.
        self.start_method: str | None = None

    def shutdown(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        if self.handshake is not None and all(p.exitcode is None for p in self.procs):
            a = self.buffers.arrays
            a["cmd"][:] = CMD_CLOSE
            a["status"][:] = 0
            self.handshake.drain_parent()
            self.handshake.begin(len(self.procs))
            self.handshake.wake()
            try:
                self.handshake.wait_parent(max(0.0, deadline - time.monotonic()))
            except BaseException:  # noqa: BLE001 - a second Ctrl-C must not leak workers
                pass
        elif self.handshake is None:
            # Workers that never attached wait for the parent's message on their pipe. Closing
            # it would not reach them (forked siblings hold copies of its end): say so instead.
            for conn in self.conns:
                try:
                    conn.send(("close",))
                except (BrokenPipeError, OSError):
                    pass
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
        # A worker killed (by us or by a signal) may have died while writing a log record.
        if self.start_method is not None and any((p.exitcode or 0) < 0 for p in self.procs):
            logs.retire(self.start_method)
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []
        if self.handshake is not None:
            self.handshake.destroy()
            self.handshake = None
        if self.buffers is not None:
            self.buffers.close()
            self.buffers = None


def _reraise(msg: tuple) -> BaseException:
    """Rebuild a worker's exception in the parent, with the worker index and its traceback."""
    _, index, blob, type_name, text, tb = msg
    exc: BaseException | None = None
    if blob is not None:
        try:
            exc = pickle.loads(blob)
        except Exception:
            exc = None
    if exc is None:
        exc = WorkerError(f"{type_name}: {text}", index=index)
    exc.__cause__ = RemoteTraceback(tb)
    if sys.version_info >= (3, 11):
        exc.add_note(f"Raised in fastretro worker {index} (env {index}); the pool has been closed")
    if isinstance(exc, WorkerError) and exc.index is None:
        exc.index = index
    return exc


def _compile_kernels(prep: Preprocessing, screen_shape: tuple[int, ...], row: np.ndarray) -> None:
    # Numba compiles on first call; doing that once here, with the same array types as the
    # workers (a zero screen, a scratch row shaped like a shared one), fills numba's on-disk
    # cache, so every worker then loads machine code in milliseconds instead of compiling.
    scratch = np.zeros_like(row)
    slot = np.zeros(1, np.int32)
    window = (0, 0, *screen_shape[:2])
    writer = FrameWriter(prep, screen_shape, window, None, scratch, slot)
    writer.warm_up(np.zeros(screen_shape, np.uint8))


def _context(start_method: str | None):
    methods = mp.get_all_start_methods()
    if start_method is None:
        start_method = "fork" if sys.platform.startswith("linux") else methods[0]
    if start_method not in methods:
        raise InvalidArgumentError(
            f"Expected start_method to be one of {methods} or None, got {start_method!r}"
        )
    return mp.get_context(start_method)


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    for m in AutoresetMode:
        if isinstance(mode, str) and mode.lower().replace("_", "") in (
            m.value.lower(),
            m.name.lower().replace("_", ""),
        ):
            return m
    raise InvalidArgumentError(
        f"Expected autoreset_mode to be one of {[m.name for m in AutoresetMode]}, got {mode!r}"
    )


def _record_dirs(record: Any, num_envs: int) -> tuple[str, ...] | None:
    """Each env's movie folder (created), from the ``record`` option."""
    if record is None:
        return None
    if isinstance(record, (str, os.PathLike)):
        base = os.path.abspath(os.fspath(record))
        dirs = [os.path.join(base, f"env{i:03d}") for i in range(num_envs)]
        if os.path.exists(base) and not os.path.isdir(base):
            raise InvalidArgumentError(f"record={base!r} exists and is not a folder")
    elif (
        isinstance(record, (list, tuple))
        and len(record) == num_envs
        and all(isinstance(r, (str, os.PathLike)) for r in record)
    ):
        dirs = [os.path.abspath(os.fspath(r)) for r in record]
    else:
        raise InvalidArgumentError(
            "Expected record to be a folder path, a list of num_envs folder paths or None, got "
            f"{type(record).__name__}"
        )
    for d in dirs:
        if os.path.exists(d) and not os.path.isdir(d):
            raise InvalidArgumentError(f"record={d!r} exists and is not a folder")
        try:
            os.makedirs(d, exist_ok=True)
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot create the movie folder {d!r}: {exc}") from None
    return tuple(dirs)


def _is_number(value: Any) -> bool:
    # bool is an int to Python, but True is no probability or scale anyone means.
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"Expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"Expected {name} >= {minimum}, got {value}")
    return int(value)
