"""VecRetroEnv: N emulators in worker processes, stepped over shared memory; the gymnasium face.

The parent never creates an emulator (stable-retro allows one per process). Each worker owns
its envs' emulators and their rows of every shared array; a step is: the parent writes the
actions, wakes the workers with one futex call (``fastretro.runtime._ext.handshake``), and
sleeps until the completions it waits for have arrived. Nothing is pickled on that path.

Lock-step and async mode are one body, as in EnvPool and PufferLib: every command is a
completion per env on one queue, lock-step waits for every env it sent (and reads the results
in env order, as views of shared memory), async mode waits for the first ``batch_size`` (and
copies them out, since the other envs keep writing). Two classes would share everything but
``step``/``recv``; one keeps a single set of workers, buffers, checks and restarts. The
lock-step calls keep gymnasium ``AsyncVectorEnv``'s explicit state machine (IDLE,
WAITING_RESET, WAITING_STEP): each ``*_async`` checks and sets it, each ``*_wait`` checks and
resets it, and misuse raises :class:`~fastretro.errors.StateMachineError` naming the pending
call. Async calls check which envs are in flight instead. That machine, the argument checks,
the seeds and the infos' names are the contract every transport keeps (contract.py).

The class itself checks, sends and waits; its parts live beside it, each an object it holds:
the plan of what it runs (plan.py), the worker processes (workers.py) and their supervision
(supervisor.py), the shared memory (buffers.py), action checks and staging (staging.py), what
a call returns (results.py), snapshots, sequences, the games' books (episodes.py) and stats.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping, Sequence
from operator import attrgetter
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fastretro.config import EnvConfig, PoolConfig, from_arguments
from fastretro.errors import StateMachineError
from fastretro.runtime import actions as fr_actions
from fastretro.runtime.buffers import PoolBuffers
from fastretro.runtime.contract import CallState, InfoRows, State, protocol_infos, reset_mask
from fastretro.runtime.episodes import EpisodeStatistics
from fastretro.runtime.games import GameSetup
from fastretro.runtime.plan import PoolPlan
from fastretro.runtime.preprocess import Preprocessing, copy_into
from fastretro.runtime.protocol import RESET_NEXT_EPISODE, Autoreset, Command, WorkerReady
from fastretro.runtime.results import Results, StepResult
from fastretro.runtime.sequences import SequenceRows
from fastretro.runtime.snapshots import Snapshot, SnapshotSlots
from fastretro.runtime.staging import ActionStaging
from fastretro.runtime.stats import COLLECT, STAGE, WAIT, PoolCounters, PoolStats
from fastretro.runtime.supervisor import RESTART_WINDOW_S, Supervisor
from fastretro.runtime.threads import WORKER_SETS
from fastretro.runtime.workers import LIVENESS_POLL_S, WorkerSet, compile_kernels

__all__ = ["RESTART_WINDOW_S", "Snapshot", "State", "VecRetroEnv"]


def _env(name: str, doc: str) -> Any:
    """A read-only attribute that is the field ``name`` of the pool's ``config``."""
    # attrgetter: a getter in C, as cheap as an attribute (the step reads some of these).
    return property(attrgetter(f"config.{name}"), doc=doc)


def _pool(name: str, doc: str) -> Any:
    """A read-only attribute that is the field ``name`` of the pool's ``pool_config``."""
    return property(attrgetter(f"pool_config.{name}"), doc=doc)


class VecRetroEnv(gymnasium.vector.VectorEnv):
    """N emulators, in worker processes, with observations in shared memory.

    ``VecRetroEnv(game, num_envs, **options)``, or ``VecRetroEnv(config, num_envs)`` with an
    :class:`~fastretro.config.EnvConfig`, or both (the options then change the config). Every
    option is a field of :class:`~fastretro.config.EnvConfig` (what an env is and does: frame
    timing, actions, preprocessing, rewards, recording, snapshots, sequences, shortcuts) or of
    :class:`~fastretro.config.PoolConfig` (how the pool runs: ``batch_size``,
    ``autoreset_mode``, ``seed``, ``copy``, ``start_method``, ``on_worker_failure``, timeouts);
    their docstrings document each one. The pool shows them as ``config`` and ``pool_config``.

    Args:
        game: a stable-retro game ID, one per env, or an ``EnvConfig``.
        num_envs: number of emulators (default: ``pool.num_envs``, else 1).
        state: save state(s) to start episodes from (overrides the config's).
        scenario: scenario(s) (overrides the config's).
        config: an ``EnvConfig`` (when ``game`` is not one).
        pool: a ``PoolConfig``.
        **options: fields of either config.

    Observations are uint8 arrays ``(num_envs, *obs_shape)``: the screen's (H, W, 3), or what
    the preprocessing options make of it, computed inside each worker by the kernels of
    :mod:`fastretro.runtime.kernels`. Actions follow ``single_action_space``.

    Raises:
        InvalidArgumentError: (and its subclasses) for any bad option, before a worker starts.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        game: str | Sequence[str] | EnvConfig | None = None,
        num_envs: int | None = None,
        state: str | None | Sequence[str | None] = None,
        scenario: str | None | Sequence[str | None] = None,
        *,
        config: EnvConfig | None = None,
        pool: PoolConfig | None = None,
        **options: Any,
    ) -> None:
        self._calls = CallState(0)  # closed until construction succeeds: close() is a no-op
        self._workers: WorkerSet | None = None
        cfg, pc = from_arguments(game, num_envs, state, scenario, config, pool, options)
        #: What every env is and does (checked); the same object the workers read.
        self.config: EnvConfig = cfg
        #: How the pool runs its envs (checked).
        self.pool_config: PoolConfig = pc
        n = self.num_envs = pc.num_envs
        #: The call-state machine and its checks (fastretro/runtime/contract.py).
        self._calls = CallState(
            n, pc.batch_size, pc.seed, pc.autoreset_mode == AutoresetMode.DISABLED
        )
        self.autoreset_mode = pc.autoreset_mode
        self.metadata = {**type(self).metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = None
        #: Seconds a step, reset or recv waits (settable; see PoolConfig.step_timeout).
        self.step_timeout = pc.step_timeout

        plan = PoolPlan.make(cfg, pc)  # what the pool runs, decided before a worker starts
        self.pool_config = plan.pool_config  # with envs_per_worker decided
        #: Each env's resolved game, state and scenario.
        self.setups: list[GameSetup] = plan.setups
        self.buttons: tuple[str, ...] = plan.buttons
        self.info_names: tuple[str, ...] = plan.info_names
        #: Per env: "fastretro" (the worker evaluates the scenario) or "stable-retro".
        self.scenario_engines: tuple[str, ...] = plan.scenario_engines
        #: Why the pool runs on its backend (``backends`` says which, per env).
        self.backend_why = plan.backend_why

        self._env_seeds = np.full(n, -1, dtype=np.int64)
        self._in_flight = np.zeros(n, dtype=bool)
        self._in_flight_u8 = self._in_flight.view(np.uint8)  # the same memory, for BatchIO
        self._slots = np.zeros(n, dtype=np.int32)  # async mode: each env's ring slot
        self._slot = 0  # lock-step: every env's ring slot
        self._pending_mask = np.ones(n, dtype=bool)
        #: The whole games' books (EnvConfig.episode_statistics), or None.
        self._episodes = (
            EpisodeStatistics.of(cfg, n, pc.autoreset_mode) if cfg.episode_statistics else None
        )
        self._new_games = np.ones(n, dtype=bool)  # which envs the pending reset starts anew
        self._start(plan)

    def _start(self, plan: PoolPlan) -> None:
        """Start the workers, check what they run agrees, create the shared memory, attach."""
        cfg, pc = self.config, self.pool_config
        workers = self._workers = WORKER_SETS[pc.workers](  # processes or threads
            cfg, pc, self.setups, plan.backend, Autoreset.of(self.autoreset_mode), self.info_names
        )
        sup = self._sup = Supervisor(
            workers,
            pc,
            in_flight=self._in_flight,
            env_seeds=self._env_seeds,
            fail=self._fail,
            on_restart=self._refill_final_obs,
        )
        #: Whether the parent watches for a batch's end before sleeping (PoolConfig.spin).
        self.spins: bool = sup.spins
        #: Whether the workers watch for their next command before sleeping.
        self.workers_spin: bool = sup.workers_spin
        self._finalizer = weakref.finalize(self, workers.shutdown, 5.0)
        self._calls.open()
        try:
            deadline = time.monotonic() + pc.startup_timeout
            ready: list[WorkerReady] = workers.start_all(deadline)
            self.screen_shape, action_mode, action_sizes = plan.check_ready(ready)
            #: Per env: the emulator backend that runs it.
            self.backends: tuple[str, ...] = tuple(r.backend for r in ready)
            #: Per env: whether frames no observation uses run without drawing (Genesis).
            self.skips_rendering: tuple[bool, ...] = tuple(r.skips_rendering for r in ready)
            #: Per env: whether the FM chip runs without its sound (Genesis; ``skip_audio``).
            self.skips_audio: tuple[bool, ...] = tuple(r.skips_audio for r in ready)
            #: Per env: the emulator's picture its observations are made from (see WorkerReady).
            self.observes_from: tuple[str, ...] = tuple(r.observes_from for r in ready)
            self._create_parts(action_mode, action_sizes, ready)
            prep = self.preprocessing
            if cfg.observe and (prep.grayscale or prep.resize is not None):
                compile_kernels(prep, self.screen_shape, self._a["obs"][0], plan.backend == "ale")
            workers.attach(deadline)
        except BaseException:
            self.close()
            raise

        self.single_observation_space = gymnasium.spaces.Box(0, 255, self._obs_shape, np.uint8)
        self.single_action_space = fr_actions.space(action_mode, action_sizes)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _create_parts(self, action_mode: int, action_sizes: tuple, ready: list) -> None:
        """Create the shared memory, and the parts of the pool that work on it."""
        n, cfg, pc, workers = self.num_envs, self.config, self.pool_config, self._workers
        same_step = self.autoreset_mode == AutoresetMode.SAME_STEP
        buffers = PoolBuffers.create(cfg, ready, same_step, len(action_sizes), len(self.info_names))
        workers.buffers, workers.handshake = buffers.shared, buffers.handshake
        # The step reads these on every call: attributes of their own, not lookups in buffers.
        a = self._a = buffers.shared.arrays
        self._hs, self._io, self._stack_views = buffers.handshake, buffers.io, buffers.stack_views
        self._obs_shape = buffers.obs_shape
        self._sup.attach(a, self._hs, self._io)
        rows = "num_envs" if self.batch_size is None else "len(env_ids)"
        st = ActionStaging(n, self.buttons, action_mode, action_sizes, self._io, rows)
        self._staging, self._sequences = st, SequenceRows(a, cfg.sequence_length, st.mode, st.high)
        running = self._in_flight if self.batch_size is not None else None
        self._snapshots = SnapshotSlots.of(a, cfg, self.setups, self.scenario_engines, running)
        self._counters = PoolCounters(a["timing"], workers)
        info_rows = InfoRows(self.info_names, self.setups, protocol_infos(cfg))
        snapshots = self._snapshots if cfg.snapshot_best else None
        sequences = self._sequences if cfg.sequence_length else None
        # What a call returns, read from the shared rows once the workers are done.
        self._results = Results(
            buffers, info_rows, pc, self._calls, self._sup, snapshots, self._episodes, sequences
        )
        self._clock = self._sup.clock = self._counters.clock

    # -- the configuration, as attributes -------------------------------------------------

    frameskip: int = _env("frameskip", "Emulator frames per agent step.")
    sticky_prob: float = _env("sticky_prob", "The sticky-frame probability.")
    max_pool: bool = _env("max_pool", "Whether observations max-pool the step's last two frames.")
    preprocessing: Preprocessing = _env("preprocessing", "What the workers do to each frame.")
    observe: bool = _env("observe", "Whether the pool produces observations.")
    max_episode_steps: int | None = _env(
        "max_episode_steps", "Agent steps after which an episode is truncated."
    )
    snapshot_best: bool = _env("snapshot_best", "Whether workers keep each episode's best state.")
    sequence_length: int = _env("sequence_length", "The longest action sequence the pool takes.")
    batch_size: int | None = _pool("batch_size", "Async mode's batch (``None``: lock-step).")
    copy: bool = _pool("copy", "Whether observations are returned as copies.")
    on_worker_failure: str = _pool("on_worker_failure", "What a dead worker does to the pool.")

    @property
    def worker_pids(self) -> tuple[int, ...]:
        """Each worker's pid (the pool's own with ``workers="threads"``)."""
        self._calls.check_open("worker_pids")
        return tuple(int(p) for p in self._workers.pids)

    # -- the gymnasium / baselines interface (lock-step) -------------------------------------

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
        self._calls.check_idle("reset_async")
        self._calls.check_lock_step("reset")
        mask = reset_mask(options, self.num_envs)
        seeds = self._calls.seeds(seed)
        idx = np.flatnonzero(mask)
        a = self._a
        a["arg"][idx] = seeds[idx]
        self._env_seeds[idx] = seeds[idx]
        self._new_games[:] = True
        if options is not None and options.get("reset_mask") is not None:
            # The next episode of the masked envs: a game under episodic_life goes on after a
            # lost life, as the step's own autoreset would (unless a seed asks for a new one).
            a["arg"][idx[seeds[idx] < 0]] = RESET_NEXT_EPISODE
            self._new_games[idx] = seeds[idx] >= 0
        a["cmd"][idx] = Command.RESET
        self._send(idx)
        self._pending_mask = mask
        self._calls.begin(State.WAITING_RESET)

    def reset_wait(self, timeout: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Wait for the reset sent by ``reset_async``."""
        self._calls.check_waiting(State.WAITING_RESET, "reset_wait", "reset_async")
        self._wait_for(int(self._pending_mask.sum()), timeout, "reset")
        self._in_flight[:] = False
        self._calls.end()
        self._calls.mark_reset(self._pending_mask)
        if self._episodes is not None:
            self._episodes.new_games(self._pending_mask & self._new_games)
        return self._results.observations(self._slot), self._results.infos(None)

    def step(self, actions: np.ndarray) -> StepResult:
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
        arr = self._fast_step_form(actions)
        if arr is None:  # misuse, or actions the checks must convert: the general path
            self.step_async(actions)
            return self.step_wait()
        n, st = self.num_envs, self._staging
        slot = (self._slot + 1) % len(self._stack_views)
        rewards = np.empty(n)
        terminated, truncated = np.empty(n, np.uint8), np.empty(n, np.uint8)
        buttons, indices = (None, arr) if st.index_high is not None else (arr, None)
        waited = int(self._clock[WAIT])
        try:
            ended = self._io.step(
                self._hs,
                buttons,
                indices,
                st.index_high or 0,
                slot,
                LIVENESS_POLL_S,
                self._sup.spin_budget(),
                self._in_flight_u8,
                rewards,
                terminated,
                truncated,
                self._clock,
            )
        except BaseException as exc:
            # Ctrl-C in the wait: a half-finished batch leaves the pool unusable (as in _wait).
            self._fail(exc)
            raise
        if ended < -1:  # an action out of range, nothing sent: the checks say which
            self.step_async(actions)
        self._slot = slot
        if ended == -1:  # not done within a poll: watch the workers while the batch finishes
            self._calls.begin(State.WAITING_STEP)
            self._wait_for(n, None, "step", armed=True)
            self._calls.end()
            self._in_flight[:] = False
            start_ns = time.monotonic_ns()
            ended = self._io.collect(rewards, terminated, truncated)
            self._clock[COLLECT] += time.monotonic_ns() - start_ns
        else:
            self._sup.note_wait(int(self._clock[WAIT]) - waited, counted=True)
            self._sup.check_failed("step")
        return self._results.lock_step(
            slot, rewards, terminated.view(bool), truncated.view(bool), ended
        )

    def _fast_step_form(self, actions: Any) -> np.ndarray | None:
        """``actions`` as the compiled step takes them, or None where ``step`` cannot use it."""
        if (
            self._calls.closed
            or self._calls.state is not State.IDLE
            or self.batch_size is not None
            or self._sup.any_restarted
            or not self._calls.all_reset
            or self._calls.reset_due
        ):
            return None
        return self._staging.fast_form(actions, self.num_envs)

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions and return at once; ``step_wait`` collects the results."""
        start_ns = time.monotonic_ns()
        self._calls.check_idle("step_async")
        self._calls.check_lock_step("step")
        self._calls.check_reset_once(None, "step_async", "reset")
        self._calls.check_no_reset_due()
        # The frame stack's ring advances one slot per step (fastretro/runtime/preprocess.py).
        slot = (self._slot + 1) % len(self._stack_views)
        if not self._staging.stage_all(actions, slot):
            a = self._a
            np.copyto(a["actions"], self._staging.check(actions, self.num_envs), casting="unsafe")
            a["slot"][:] = slot
            a["cmd"][:] = Command.STEP
        self._slot = slot
        self._clock[STAGE] += time.monotonic_ns() - start_ns
        self._send(None)
        self._calls.begin(State.WAITING_STEP)

    def step_wait(self, timeout: float | None = None) -> StepResult:
        """Wait for the step sent by ``step_async``; see :meth:`step` for what it returns."""
        self._calls.check_waiting(State.WAITING_STEP, "step_wait", "step_async")
        self._wait_for(self.num_envs, timeout, "step")
        start_ns = time.monotonic_ns()
        self._in_flight[:] = False
        self._calls.end()
        n = self.num_envs
        rewards = np.empty(n)
        terminated, truncated = np.empty(n, np.uint8), np.empty(n, np.uint8)
        ended = self._io.collect(rewards, terminated, truncated)
        results = self._results.lock_step(
            self._slot, rewards, terminated.view(bool), truncated.view(bool), ended
        )
        self._clock[COLLECT] += time.monotonic_ns() - start_ns
        return results

    # -- sequences: many steps per round trip -----------------------------------------------

    def step_sequences(
        self, actions: np.ndarray, lengths: Sequence[int] | np.ndarray
    ) -> StepResult:
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
        self._calls.check_idle("step_sequences")
        self._calls.check_lock_step("step_sequences")
        self._calls.check_reset_once(None, "step_sequences", "reset")
        self._calls.check_no_reset_due()
        longest = self._sequences.stage(actions, lengths, None)
        self._send(None)
        self._calls.begin(State.WAITING_STEP)
        self._wait_for(self.num_envs, self.step_timeout * longest, "step_sequences")
        self._in_flight[:] = False
        self._calls.end()
        n = self.num_envs
        rewards = np.empty(n)
        terminated, truncated = np.empty(n, np.uint8), np.empty(n, np.uint8)
        ended = self._io.collect(rewards, terminated, truncated)
        obs, rewards, terminated, truncated, infos = self._results.lock_step(
            self._slot, rewards, terminated.view(bool), truncated.view(bool), ended
        )
        infos.update(self._sequences.infos())
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
        self._calls.check_async("send_sequences")
        ids = self._staging.check_env_ids(env_ids, self._in_flight)
        self._calls.check_reset_once(ids, "send_sequences", "async_reset")
        self._sequences.stage(actions, lengths, ids)
        self._send(ids)

    # -- snapshots: go on from where an episode did best --------------------------------------

    def best_snapshot(self, env_id: int) -> Snapshot:
        """Where env ``env_id``'s last finished episode first reached its highest return.

        Needs ``snapshot_best=True``. Available from the step that ended the episode until
        the env's next episode ends (or a :meth:`restore` into that env).
        """
        self._calls.check_idle("best_snapshot")
        return self._snapshots.best(env_id)

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
        self._calls.check_idle("restore")
        self._calls.check_lock_step("restore", instead="async_restore, then recv")
        mask = self._snapshots.stage(snapshots, "restore")
        self._send(np.flatnonzero(mask))
        # Collected as a reset: the restored envs are in a running episode again.
        self._pending_mask = mask
        self._calls.begin(State.WAITING_RESET)
        return self.reset_wait()

    def async_restore(self, snapshots: Mapping[int, Snapshot]) -> None:
        """Async mode: load ``{env_id: Snapshot}`` into those envs, as :meth:`restore` does.

        The envs must not be running (``recv`` them first). Each then shows up in a ``recv``
        batch as after :meth:`async_reset`: its observation is the snapshot's screen, its reward
        0, and no step is counted; its episode goes on from the snapshot's step and return.
        """
        self._calls.check_async("async_restore")
        mask = self._snapshots.stage(snapshots, "async_restore")
        self._send(np.flatnonzero(mask))
        self._calls.mark_reset(mask)  # each is in an episode again (recv returns it)

    # -- async mode (batch_size): EnvPool's send/recv ----------------------------------------

    def async_reset(self, seed: int | Sequence[int] | None = None) -> None:
        """Async mode: reset every env; each then shows up in a ``recv`` batch.

        Args:
            seed: as in :meth:`reset`.
        """
        self._calls.check_async("async_reset")
        self._calls.check_none_running("async_reset", np.flatnonzero(self._in_flight).tolist())
        a = self._a
        seeds = self._calls.seeds(seed)
        a["arg"][:] = seeds
        self._env_seeds[:] = seeds
        a["cmd"][:] = Command.RESET
        self._send(None)
        self._calls.mark_reset(None)
        if self._episodes is not None:
            # The first recv of each env brings its reset, not a step of its game.
            self._episodes.new_games(slice(None), reset_pending=True)

    def send(self, actions: np.ndarray, env_ids: Sequence[int] | np.ndarray) -> None:
        """Async mode: start one step of each env in ``env_ids`` with its row of ``actions``.

        Args:
            actions: one action per env in ``env_ids``, in the same order (shapes as in
                :meth:`step`, with ``len(env_ids)`` rows).
            env_ids: envs returned by ``recv`` and not sent since.
        """
        start_ns = time.monotonic_ns()
        self._calls.check_async("send")
        depth = len(self._stack_views)
        if self._calls.all_reset and self._staging.send_rows(
            actions, env_ids, self._slots, depth, self._in_flight_u8
        ):
            self._clock[STAGE] += time.monotonic_ns() - start_ns
            self._sup.wake()  # staged in C: marked in flight there
            return
        ids = self._staging.check_env_ids(env_ids, self._in_flight)
        self._calls.check_reset_once(ids, "send", "async_reset")
        a = self._a
        a["actions"][ids] = self._staging.check(actions, len(ids))
        self._slots[ids] = (self._slots[ids] + 1) % depth
        a["slot"][ids] = self._slots[ids]
        a["cmd"][ids] = Command.STEP
        self._clock[STAGE] += time.monotonic_ns() - start_ns
        self._send(ids)

    def recv(self, timeout: float | None = None) -> StepResult:
        """Async mode: wait for the first ``batch_size`` envs to finish; return their results.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)`` for ``batch_size`` envs, with
            ``infos["env_id"]`` saying which, in the order they finished. All arrays are new
            (not views of shared memory): the workers keep writing while you hold them. An env
            whose worker was replaced (``on_worker_failure="restart"``) comes back from its new
            episode's start with ``truncated`` and ``infos["worker_restarted"]``.
        """
        self._calls.check_async("recv")
        m = self.batch_size
        running = int(self._in_flight.sum())
        if running < m:
            raise StateMachineError(
                f"Cannot call recv with {running} envs running and batch_size={m}: send actions "
                "for the envs of the last batch first"
            )
        if timeout is None:  # a sequence of L steps may take L steps' time
            timeout = self.step_timeout * max(1, int(self._a["seq_len"].max()))
        ids = self._wait_for(m, timeout, "recv")
        start_ns = time.monotonic_ns()
        rewards = np.empty(m)
        terminated, truncated = np.empty(m, np.uint8), np.empty(m, np.uint8)
        ended = self._io.collect(rewards, terminated, truncated, ids, self._in_flight_u8)
        results = self._results.batch(
            ids, self._slots, rewards, terminated.view(bool), truncated.view(bool), ended
        )
        self._clock[COLLECT] += time.monotonic_ns() - start_ns
        return results

    # -- closing and stats ------------------------------------------------------------------

    def close(self, *, timeout: float = 5.0, **kwargs: Any) -> None:
        """Stop every worker and free the shared memory. Idempotent.

        Args:
            timeout: seconds to wait for the workers to exit on their own before they are
                killed; close returns within about ``timeout + 1`` seconds.
            **kwargs: accepted for compatibility with ``VectorEnv.close``; unused.
        """
        if self._calls.closed:
            return
        self._calls.close()
        self._stack_views = []
        self._a = {}
        if self._workers is not None:
            self._finalizer.detach()
            self._workers.shutdown(timeout=timeout)

    def stats(self) -> PoolStats:
        """Where the pool's time went since it started or since :meth:`reset_stats`.

        The counters live in shared memory and are kept by the workers all the time (~1.5 us of
        clock reads per step, ext/worker_loop.pyx); this call only copies them. See
        :class:`fastretro.runtime.stats.PoolStats` for the fields.
        """
        self._calls.check_open("stats")
        return self._counters.read()

    def reset_stats(self) -> None:
        """Start :meth:`stats` counting from now."""
        self._calls.check_open("reset_stats")
        self._counters.restart()

    def __enter__(self) -> VecRetroEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def worker_restarts(self) -> int:
        """Workers replaced after dying (``on_worker_failure="restart"``)."""
        sup = getattr(self, "_sup", None)
        return 0 if sup is None else sup.restarts

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run (or construction failed)."""
        return self._calls.closed

    # -- internals: send, wait, restart ---------------------------------------------------

    def _send(self, ids: np.ndarray | None) -> None:
        """The envs ``ids`` (None: all) have their command words set: mark them, wake."""
        if ids is None:
            self._in_flight[:] = True
        else:
            self._in_flight[ids] = True
        self._sup.wake()

    def _wait_for(self, count: int, timeout: float | None, what: str, armed=False) -> np.ndarray:
        """Wait until ``count`` more envs have completed (see :meth:`Supervisor.wait_for`)."""
        timeout = self.step_timeout if timeout is None else timeout
        return self._sup.wait_for(count, timeout, what, armed)

    def _refill_final_obs(self, envs: np.ndarray) -> None:
        """A replaced worker's envs: the crash left no last frame; the new episode's first."""
        if self.autoreset_mode == AutoresetMode.SAME_STEP and self.observe:
            for i in envs:
                slot = self._slot if self.batch_size is None else self._slots[i]
                copy_into(self._stack_views[slot][i], self._a["final_obs"][i])

    def _fail(self, exc: BaseException) -> None:
        self._calls.fail(exc)
        self.close(timeout=1.0)  # a worker may be hung: do not wait the full 5 s for it

    def __repr__(self) -> str:
        games = sorted({s.game for s in self.setups}) if hasattr(self, "setups") else []
        return f"VecRetroEnv({', '.join(games)}, num_envs={getattr(self, 'num_envs', '?')})"

    def __del__(self) -> None:
        # The finalizer does the work; this only keeps gymnasium's VectorEnv.__del__ away
        # from a half-constructed object.
        pass
