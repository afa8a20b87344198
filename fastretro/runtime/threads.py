"""The in-process transport: a pool's workers as threads of the pool's own process.

``VecRetroEnv(..., workers="threads")`` runs each worker's :func:`~fastretro.runtime.worker.serve`
in a thread instead of a process, over the same shared-memory layout and the same handshake
(futexes and the process-shared semaphore work between threads; every wait releases the GIL,
ext/handshake.pyx). Everything above the worker set (the contract, results, infos, snapshots,
sequences, async send/recv) is the same code. What it is for: debugging. A breakpoint, a
``print`` or a monkeypatch in the emulator, the worker or the compiled loop's callbacks takes
effect in the process you run, and a worker's stack shows up in your debugger. It is not for
speed: the threads share the GIL, which the emulators hold while they step.

What a thread cannot do, and what :class:`ThreadWorkerSet` does instead:

- It cannot be killed: a stuck worker fails the pool with ``WorkerTimeoutError`` (nothing can
  replace it), so ``on_worker_failure="restart"`` is refused when the config is made; a thread
  that does not stop on close is left running (a daemon), and the pool's memory stays mapped
  until it ends.
- Its parent is the process itself: it watches the main thread (and its pool's close) instead.
- It shares the process with everything else: no SIGINT handler (only the main thread may set
  one; Ctrl-C reaches the main thread as usual), no ``SCHED_BATCH``, no ``gc.freeze``, and no
  log queue (records go to the process's handlers directly). It maps the segment as a worker
  process does, which registers nothing with the resource tracker; its mapping outlives the
  pool's close while it runs, so a thread left running never touches unmapped memory.
- stable-retro allows one emulator per process: with stable-retro an in-process pool runs one
  env, and only one such pool may be open in a process (:func:`check_backend`). ALE allows many
  (envs_per_worker applies as in a process pool).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import threading
import time
from typing import Any

import numpy as np

from fastretro.errors import InvalidArgumentError, WorkerDiedError
from fastretro.runtime.shm import SharedBuffers
from fastretro.runtime.worker import PARENT_POLL_S, serve
from fastretro.runtime.workers import WorkerSet, start_method

log = logging.getLogger(__name__)

#: The in-process pools of this process that hold a stable-retro emulator (their ids).
_retro_holders: set[int] = set()

_RETRO_ONE = "stable-retro allows one emulator per process"


def check_backend(backend: str, pool_config: Any) -> None:
    """Refuse, before any worker starts, a pool this process cannot run beside its own emulators.

    Raises:
        InvalidArgumentError: an in-process stable-retro pool of more than one env, or while
            another is open; a forked stable-retro process pool while one is open (its workers
            would inherit the emulator).
    """
    if backend != "stable-retro":
        return
    pc = pool_config
    if pc.workers == "threads":
        if pc.num_envs > 1:
            raise InvalidArgumentError(
                f"Expected num_envs=1 with workers='threads' on the stable-retro backend "
                f"({_RETRO_ONE}, and every thread is in this one), got {pc.num_envs}: use "
                "workers='processes' (the default) for more envs, or an Atari game on "
                "backend='ale', which runs several in one process"
            )
        if _retro_holders:
            raise InvalidArgumentError(
                f"Cannot open a second pool with workers='threads' on the stable-retro backend "
                f"in this process: {_RETRO_ONE}, and an open in-process pool holds it. Close "
                "that pool first, or use workers='processes' (the default)"
            )
    elif _retro_holders and start_method(pc) == "fork":
        raise InvalidArgumentError(
            f"Cannot fork stable-retro workers while a pool with workers='threads' holds a "
            f"stable-retro emulator in this process: {_RETRO_ONE}, and a forked worker "
            "inherits it. Close that pool first, or use start_method='forkserver' or 'spawn'"
        )


class WorkerThread(threading.Thread):
    """One worker's thread, seen as the worker set sees a process (``pid``, ``exitcode``)."""

    @property
    def pid(self) -> int:
        """The process's pid: the thread runs in it."""
        return os.getpid()

    @property
    def exitcode(self) -> int | None:
        """None while the thread runs (or before it starts), then 0."""
        return None if self.ident is None or self.is_alive() else 0


class ThreadWorkerSet(WorkerSet):
    """Every worker of one pool, as threads of this process (``PoolConfig.workers="threads"``).

    The interface of :class:`~fastretro.runtime.workers.WorkerSet`, which it reuses where a
    thread behaves as a process does (gathering the workers' messages, re-raising their errors,
    asking them to close); the arguments are the same.
    """

    # No spinning by default: the threads take turns on the GIL, so a round trip's
    # microseconds are not what limits them, and a thread that spins while its pool waits (at
    # a breakpoint, say) holds a core the process being debugged would rather have. An
    # explicit spin=True still spins (its watch releases the GIL).
    auto_spin = False

    def __init__(self, env_config, pool_config, setups, backend, autoreset, info_names) -> None:
        super().__init__(env_config, pool_config, setups, backend, autoreset, info_names)
        self._closing = False
        if backend == "stable-retro":
            _retro_holders.add(id(self))

    def _context(self) -> tuple[Any, Any]:
        return None, None  # no process to start, no queue to log through

    @property
    def cpu_ids(self) -> np.ndarray:
        """Per worker, its thread's id (``/proc/<tid>/stat`` counts the thread's CPU time)."""
        return np.array([t.native_id if t is not None else -1 for t in self.procs], np.int64)

    def start(self, worker: int) -> None:
        """Start worker ``worker``'s thread."""
        parent_conn, child_conn = mp.Pipe()
        thread = WorkerThread(
            target=serve,
            name=f"fastretro-worker-{worker}",
            args=(
                *self.serve_args(worker, child_conn),
                self._pool_alive,
                # Its own mapping of the segment, as a worker process has, not the pool's
                # arrays: the pool makes the observations it hands out read-only (with one
                # frame, ``obs`` itself). shm.py maps a segment without registering it with
                # the resource tracker, so attaching in the pool's process registers nothing.
                SharedBuffers.attach,
            ),
            daemon=True,  # the pool's finalizer stops it at exit: it must not block the exit
        )
        thread.start()
        self.procs[worker], self.conns[worker] = thread, parent_conn

    def _pool_alive(self) -> bool:
        # A worker thread's "parent": the pool until it closes, and the main thread, which
        # stops when the interpreter exits (idle workers then end within PARENT_POLL_S).
        return not self._closing and threading.main_thread().is_alive()

    def replace(self, worker: int, deadline: float) -> None:
        """Never called: a worker thread cannot be replaced (``restart`` is refused)."""
        raise AssertionError("worker threads are not replaced (PoolConfig refuses 'restart')")

    def kill(self, worker: int) -> None:
        """Never called: a thread cannot be killed (``restart`` is refused)."""
        raise AssertionError("worker threads are not killed (PoolConfig refuses 'restart')")

    def died(self, worker: int, when: str) -> WorkerDiedError:
        """The error that says worker ``worker``'s thread ended."""
        name = self.procs[worker].name
        return WorkerDiedError(
            f"Worker {worker} (thread {name}) stopped {when}; the pool has been closed", worker
        )

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker thread and free the shared memory (see ``WorkerSet.shutdown``)."""
        if threading.current_thread() in self.procs:
            # The garbage collector may finalize an unclosed pool in any thread, one of its own
            # workers included, and a worker cannot wait for itself to stop: another thread does
            # (not a daemon: the interpreter's exit waits for it to free the memory).
            threading.Thread(target=super().shutdown, args=(timeout,), daemon=False).start()
            return
        super().shutdown(timeout)

    def _reap(self, procs: list, deadline: float) -> bool:
        """Join the threads; one that does not stop by ``deadline`` is left running."""
        self._closing = True  # idle threads that missed CLOSE stop within PARENT_POLL_S
        deadline = max(deadline, time.monotonic() + 2 * PARENT_POLL_S)
        for thread in procs:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in procs if t.is_alive()]
        if stuck:
            log.warning(
                "worker threads %s did not stop, and a thread cannot be killed: left running, "
                "with the pool's memory mapped until they end",
                stuck,
            )
        else:
            _retro_holders.discard(id(self))  # their emulators are closed
        return not stuck


#: The worker set of each ``PoolConfig.workers``.
WORKER_SETS = {"processes": WorkerSet, "threads": ThreadWorkerSet}
