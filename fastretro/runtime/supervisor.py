"""The pool's supervision of its workers: wake, wait for a batch, notice the dead, restart or fail.

:class:`Supervisor` sits beside the :class:`~fastretro.runtime.workers.WorkerSet` (which only
starts, replaces and stops processes) and is the one place that decides what a dead, stuck or
failed worker does to a pool: every wait for completions goes through :meth:`Supervisor.wait`,
which sleeps on the handshake in ``LIVENESS_POLL_S`` slices and looks at the workers between
them. With ``on_worker_failure="restart"`` a worker that died during a step is replaced (unless
it died again within ``RESTART_WINDOW_S`` of its last restart) and its envs are reported as
restarted; otherwise, and for every other failure, the pool is failed: closed, with the reason
kept for the next call's :class:`~fastretro.errors.ClosedError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fastretro.config import PoolConfig
from fastretro.errors import WorkerTimeoutError
from fastretro.runtime.stats import BATCHES, WAIT, WAKE, available_cores
from fastretro.runtime.workers import LIVENESS_POLL_S, WorkerSet

log = logging.getLogger(__name__)

#: A restarted worker that dies again within this many seconds raises instead of restarting.
RESTART_WINDOW_S = 30.0
#: Where every worker has a core of its own (PoolConfig.spin), a worker watches for its next
#: command this long before sleeping: long enough to cover the pool's own part of a round trip,
#: short enough not to compete with the agent's threads (bench/bench_overhead.py --spin).
WORKER_SPIN_S = 100e-6
#: ... and the parent watches for the batch's end up to this multiple of its recent waits,
#: capped: a step that takes longer than usual ends in the usual sleep.
PARENT_SPIN_FACTOR, PARENT_SPIN_MAX_S = 1.5, 2e-3
#: A parent spin that ends in a sleep means another process holds the core the pool counted
#: on (the agent's threads, another job): the parent then skips spinning for 1, 3, 7, ...
#: batches, up to this many, so that it stops taking the core from its own workers
#: (bench/bench_overhead.py --busy measures 1 env beside a busy core).
SPIN_SKIP_MAX = 1023
#: The calls during which a dead worker may be restarted; elsewhere (a reset, a sequence) the
#: caller expects every env's answer to that very command, which a replacement cannot give.
RESTARTABLE = ("step", "recv")


class SpinBackoff:
    """The parent's spin budget per batch: a multiple of its recent waits, backing off on misses.

    ``budget(misses, wait_avg_s)`` is called once per batch with the handshake's running count
    of spins that ended without the batch; a miss since the last spin doubles the number of
    batches that follow without a spin, a hit resets it.
    """

    def __init__(self) -> None:
        self.skip = 0  # batches without a spin after the latest miss
        self._left = 0
        self._seen = 0
        self._spun = False

    def budget(self, misses: int, wait_avg_s: float) -> float:
        """Seconds to spin before this batch's sleep (0: skip the spin)."""
        if self._spun:
            if misses != self._seen:
                self.skip = min(2 * self.skip + 1, SPIN_SKIP_MAX)
                self._left = self.skip
            else:
                self.skip = 0
        self._seen = misses
        if self._left > 0:
            self._left -= 1
            self._spun = False
            return 0.0
        self._spun = True
        return min(PARENT_SPIN_FACTOR * wait_avg_s, PARENT_SPIN_MAX_S)


class Supervisor:
    """Waits for a pool's batches and decides what its dead, stuck or failed workers do to it.

    Args:
        workers: the pool's worker processes.
        pool_config: how the pool runs: whether a worker that dies during a step is replaced
            (``on_worker_failure="restart"``) rather than failing the pool, the seconds a
            replacement has to start and attach (``startup_timeout``), async mode (then other
            envs' completions can keep every wait short, so the workers are also looked at
            between waits) and whether the parent and the workers spin before sleeping
            (``spin``; ``None`` decides by the cores there are: see :attr:`spins`).
        in_flight: per env, whether a command was sent and not yet collected (the pool's).
        env_seeds: per env, the seed of its current episode (-1: unseeded), which a
            replacement's reset reuses.
        fail: called with the exception that leaves the pool unusable; it closes the pool.
        on_restart: called with a replaced worker's envs once the replacement has reset them.
    """

    def __init__(
        self,
        workers: WorkerSet,
        pool_config: PoolConfig,
        *,
        in_flight: np.ndarray,
        env_seeds: np.ndarray,
        fail: Callable[[BaseException], None],
        on_restart: Callable[[np.ndarray], None],
    ) -> None:
        pc = pool_config
        self.workers = workers
        self.restart = pc.on_worker_failure == "restart"
        self.startup_timeout = pc.startup_timeout
        self.async_mode = pc.batch_size is not None
        self._in_flight = in_flight
        self._env_seeds = env_seeds
        self._fail = fail
        self._on_restart = on_restart
        n = len(in_flight)
        #: Workers replaced after dying.
        self.restarts = 0
        #: Per env: replaced since its last collected result (reported once, then cleared).
        self.restarted = np.zeros(n, dtype=bool)
        #: ``restarted.any()``, kept without a numpy call for the common case's check.
        self.any_restarted = False
        self._restart_times = np.full(len(workers.procs), -np.inf)
        cores, procs, spin = available_cores(), len(workers.procs), pc.spin
        if spin is None and not workers.auto_spin:
            spin = False  # worker threads (fastretro/runtime/threads.py says why)
        #: Whether the parent watches for a batch's end before sleeping: only where it has a
        #: core of its own beside every worker's.
        self.spins = spin if spin is not None else procs + 1 <= cores
        #: Whether the workers watch for their next command before sleeping: wherever each has
        #: a core (their spin yields, so the parent sharing one still runs at once).
        self.workers_spin = spin if spin is not None else procs <= cores
        workers.spin = WORKER_SPIN_S if self.workers_spin else 0.0
        #: The parent's clock (the pool hands over its PoolCounters.clock).
        self.clock = np.zeros(5, np.int64)
        self.wait_avg_s = 0.0  # recent waits for a batch: the parent's spin budget
        self._spin = SpinBackoff()
        self._next_liveness = 0.0  # async mode: when to look at the workers next
        self._a: dict[str, np.ndarray] = {}
        self._hs: Any = None
        self._io: Any = None

    def attach(self, arrays: dict[str, np.ndarray], handshake: Any, io: Any) -> None:
        """Watch the shared arrays, the handshake and the batch I/O of the pool's segment."""
        self._a, self._hs, self._io = arrays, handshake, io

    # -- waking and waiting -----------------------------------------------------------------

    def wake(self) -> None:
        """Wake the workers for the commands just written (or fail the pool, interrupted)."""
        start_ns = time.monotonic_ns()
        try:
            self._hs.wake()
            # Waking N workers on fewer cores often preempts the parent inside the wake syscall
            # until cores free up (~6 ms of a 10 ms step with 8 envs on 2 cores,
            # bench/bench_parent.py): time spent waiting for the emulators too.
            self.clock[WAKE] += time.monotonic_ns() - start_ns
        except BaseException as exc:
            # A Ctrl-C that lands here (the parent is often descheduled in the syscall) leaves
            # workers running a command nobody will collect: free them now, as wait does.
            self._fail(exc)
            raise

    def wait_for(self, count: int, timeout: float, what: str, armed: bool = False) -> np.ndarray:
        """Wait until ``count`` more envs have completed; those envs, in completion order.

        ``armed``: the compiled step armed the handshake and counted the batch already.
        """
        if armed:
            self.wait(timeout, what)
        else:
            self.clock[BATCHES] += 1
            if self.async_mode and time.monotonic() > self._next_liveness:
                # In async mode the other envs' completions may keep every wait short, and a
                # dead worker's envs would then never come back: look at them now and then.
                self._next_liveness = time.monotonic() + LIVENESS_POLL_S
                self._guarded(self.handle_dead, what)
            if not self._hs.arm(count):
                self.wait(timeout, what)
        ids = np.empty(count, dtype=np.int32)
        self._hs.take(count, ids)
        return ids

    def wait(self, timeout: float, what: str) -> None:
        """Sleep until the armed batch has completed, watching the workers; or fail the pool."""
        self._guarded(self._wait, timeout, what)

    def _wait(self, timeout: float, what: str) -> None:
        hs = self._hs
        start_ns = time.monotonic_ns()
        deadline = time.monotonic() + timeout
        spin = self.spin_budget()
        while not hs.wait_parent(LIVENESS_POLL_S, spin):
            spin = 0.0
            self.handle_dead(what)
            if time.monotonic() > deadline:
                self._on_deadline(timeout, what)
                deadline = time.monotonic() + timeout
        failed = self._worker_error(what)
        if failed is not None:
            raise failed
        self.note_wait(time.monotonic_ns() - start_ns)

    def _on_deadline(self, timeout: float, what: str) -> None:
        """Kill the stuck workers where they may restart (the next look replaces them), or raise."""
        workers = self.workers
        busy = sorted({workers.worker_of(int(i)) for i in np.flatnonzero(self._a["cmd"] != 0)})
        if not (busy and self.restart and what in RESTARTABLE):
            raise WorkerTimeoutError(
                f"Workers {busy} did not finish {what} within {timeout:g} s; "
                "the pool has been closed",
                index=busy[0] if busy else None,
            )
        # A worker stuck in its core is handled like a crashed one: killed, then restarted.
        for w in busy:
            log.warning("worker %d stuck for %g s; killing it", w, timeout)
            workers.kill(w)

    def _guarded(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except BaseException as exc:
            # KeyboardInterrupt included: a half-finished batch leaves the pool unusable, so
            # free the workers and the shared memory now rather than at exit.
            self._fail(exc)
            raise

    def check_failed(self, what: str) -> None:
        """Fail the pool with the exception of a worker that flagged a failure, if one did."""
        exc = self._worker_error(what)
        if exc is not None:
            self._fail(exc)
            raise exc

    def _worker_error(self, what: str) -> BaseException | None:
        # A worker's exception completes its commands, so a finished batch may hold one.
        failed = self._io.first_failed()
        if failed < 0:
            return None
        return self.workers.error_of(self.workers.worker_of(failed), what)

    def spin_budget(self) -> float:
        """Seconds the parent watches for a batch's end before sleeping (0 without spin)."""
        if not self.spins:
            return 0.0
        return self._spin.budget(self._hs.spin_misses, self.wait_avg_s)

    def note_wait(self, waited_ns: int, counted: bool = False) -> None:
        """Account a wait of ``waited_ns`` (``counted``: the clock has it already)."""
        if not counted:
            self.clock[WAIT] += waited_ns
        self.wait_avg_s += 0.1 * (waited_ns / 1e9 - self.wait_avg_s)

    # -- the dead ---------------------------------------------------------------------------

    def handle_dead(self, what: str) -> None:
        """Restart the workers that died (``on_worker_failure="restart"``), or raise."""
        workers = self.workers
        dead = workers.first_dead()
        while dead is not None:
            if not (self.restart and what in RESTARTABLE):
                raise workers.died(dead, f"during {what}")
            self._replace(dead)
            dead = workers.first_dead()

    def _replace(self, worker: int) -> None:
        """Replace dead ``worker``; its envs start new episodes and complete what was pending.

        The replacement resets its envs before it attaches; the parent then completes, on the
        dead worker's behalf, every command it had not finished, so that each command sent
        completes exactly once, in lock-step and async mode alike.
        """
        workers, a = self.workers, self._a
        now = time.monotonic()
        if now - self._restart_times[worker] < RESTART_WINDOW_S:
            raise workers.died(
                worker, f"again within {RESTART_WINDOW_S:g} s of its restart (not restarting it)"
            )
        old = workers.procs[worker]
        log.warning(
            "worker %d (pid %d) died (exit code %s); restarting it", worker, old.pid, old.exitcode
        )
        envs = np.array(workers.envs(worker))
        unfinished = envs[self._in_flight[envs] & (a["cmd"][envs] != 0)]
        a["cmd"][envs] = 0  # the replacement must not run what the dead worker left
        a["status"][envs] = 0
        a["seq_len"][envs] = 0
        a["arg"][envs] = self._env_seeds[envs]
        workers.replace(worker, now + self.startup_timeout)
        self._on_restart(envs)
        for i in unfinished:
            self._hs.done(int(i))
        self._restart_times[worker] = time.monotonic()
        self.restarted[envs] = True
        self.any_restarted = True
        self.restarts += 1

    def take_restarted(self, rows: Any) -> np.ndarray:
        """Which envs of ``rows`` were replaced since their last result; clears them."""
        restarted = self.restarted[rows].copy()
        self.restarted[rows] = False
        self.any_restarted = bool(self.restarted.any())
        return restarted
