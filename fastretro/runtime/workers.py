"""The pool's worker processes: start them, watch them, replace them, stop them.

:class:`WorkerSet` owns every process, its pipe, the shared segment and the handshake, so that a
finalizer can free them all when a pool is garbage-collected or the interpreter exits without
``close()``. Worker ``w`` runs the envs ``pool_config.worker_envs(w)`` (one per worker with
stable-retro). Nothing here steps an env: the pool writes commands and the handshake carries
them; this module only deals with processes (fastretro/runtime/threads.py: the same set as
threads of the pool's own process).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
from typing import Any

import numpy as np

from fastretro.errors import RemoteTraceback, WorkerDiedError, WorkerError, WorkerTimeoutError
from fastretro.runtime import headless, logs
from fastretro.runtime.preprocess import FrameWriter, Preprocessing
from fastretro.runtime.protocol import Command
from fastretro.runtime.worker import worker_main

#: A waiting parent wakes this often to check that its workers are alive: it bounds how long a
#: killed worker goes unnoticed, and costs nothing while steps complete sooner than this.
LIVENESS_POLL_S = 0.05


class WorkerSet:
    """Every worker process of one pool.

    Args:
        env_config: the pool's :class:`~fastretro.config.EnvConfig` (sent to each worker).
        pool_config: the pool's :class:`~fastretro.config.PoolConfig`.
        setups: each env's :class:`~fastretro.runtime.games.GameSetup`.
        backend: the emulator backend's name.
        autoreset: the :class:`~fastretro.runtime.protocol.Autoreset` code.
        info_names: the columns of the shared ``info`` rows.
    """

    #: Whether ``spin=None`` lets the workers and the parent spin where the cores allow it.
    auto_spin = True

    def __init__(self, env_config, pool_config, setups, backend, autoreset, info_names) -> None:
        self.pool_config = pool_config
        self._worker_args = (env_config, setups, backend, autoreset, info_names)
        n = pool_config.num_workers
        self.procs: list = [None] * n
        self.conns: list = [None] * n
        #: The pool's shared segment and handshake (set by the pool; freed by shutdown).
        self.buffers = None
        self.handshake = None
        #: Seconds a worker watches for its next command before sleeping (0: it sleeps).
        self.spin = 0.0
        self.ctx, self._log_queue = self._context()

    def _context(self) -> tuple[Any, Any]:
        """The multiprocessing context the workers start in, and the queue they log to."""
        ctx = mp.get_context(start_method(self.pool_config))
        return ctx, logs.worker_log_queue(ctx)

    # -- which worker runs what -----------------------------------------------------------

    def envs(self, worker: int) -> range:
        """The envs worker ``worker`` runs."""
        return self.pool_config.worker_envs(worker)

    def worker_of(self, env: int) -> int:
        """The worker that runs env ``env``."""
        return env // self.pool_config.envs_per_worker

    @property
    def pids(self) -> np.ndarray:
        """Each worker's pid (-1 before it starts)."""
        return np.array([p.pid if p is not None and p.pid else -1 for p in self.procs], np.int64)

    @property
    def cpu_ids(self) -> np.ndarray:
        """Per worker, the id whose ``/proc/<id>/stat`` counts its CPU time: its pid."""
        return self.pids

    # -- starting ---------------------------------------------------------------------------

    def serve_args(self, worker: int, conn) -> tuple:
        """What every worker starts with, whichever transport runs it: ``serve``'s first args.

        ``conn`` is the worker's end of its pipe, the last of them.
        """
        env_config, setups, backend, autoreset, info_names = self._worker_args
        envs = self.envs(worker)
        own = [setups[i] for i in envs]
        return (worker, envs, env_config, own, backend, autoreset, info_names, conn)

    def start(self, worker: int) -> None:
        """Start worker ``worker`` (at construction, or in place of a dead one)."""
        parent_conn, child_conn = self.ctx.Pipe()
        proc = self.ctx.Process(
            target=worker_main,
            name=f"fastretro-worker-{worker}",
            args=(*self.serve_args(worker, child_conn), self._log_queue, os.getpid()),
            daemon=True,
        )
        proc.start()
        child_conn.close()
        self.procs[worker], self.conns[worker] = proc, parent_conn

    def start_all(self, deadline: float) -> list:
        """Start every worker; each env's :class:`~fastretro.runtime.protocol.WorkerReady`."""
        env_config, _, backend, _, _ = self._worker_args
        prepare_parent(env_config, backend)
        for w in range(len(self.procs)):
            self.start(w)
        per_worker = self._gather("ready", deadline)
        return [ready for answer in per_worker for ready in answer]

    def attach(self, deadline: float) -> None:
        """Hand every worker the shared segment (:attr:`buffers`); return once all attached."""
        for conn in self.conns:
            conn.send(("attach", self.buffers.layout, self.buffers.name, False, self.spin))
        self._gather("attached", deadline)

    def replace(self, worker: int, deadline: float) -> None:
        """Start a new worker in place of dead ``worker``; it resets its envs, then attaches.

        Each env's seed is in the shared ``arg`` word (negative: unseeded).
        """
        old = self.procs[worker]
        self.conns[worker].close()
        old.join(1.0)
        if (old.exitcode or 0) < 0:
            # Killed, maybe in the middle of a log record: later workers log to a new queue.
            logs.retire(self.ctx.get_start_method())
            self._log_queue = logs.worker_log_queue(self.ctx)
        self.start(worker)
        self._gather_one(worker, "ready", deadline)
        self.conns[worker].send(("attach", self.buffers.layout, self.buffers.name, True, self.spin))
        self._gather_one(worker, "attached", deadline)

    def _gather(self, kind: str, deadline: float) -> list:
        """One ``kind`` message's payload from every worker (startup)."""
        answers: dict[int, Any] = {}
        waiting = dict(enumerate(self.conns))
        while waiting:
            ready = mp.connection.wait(list(waiting.values()), timeout=LIVENESS_POLL_S)
            for conn in ready:
                w = next(j for j, c in waiting.items() if c is conn)
                try:
                    msg = conn.recv()
                except EOFError:
                    raise self.died(w, f"while starting (waiting for {kind!r})") from None
                if msg[0] == "error":
                    raise self.reraise(msg)
                answers[w] = msg[2] if len(msg) > 2 else None
                del waiting[w]
            for w in list(waiting):
                if self.procs[w].exitcode is not None and not self.conns[w].poll():
                    raise self.died(w, "while starting")
            if waiting and time.monotonic() > deadline:
                raise WorkerTimeoutError(
                    f"Workers {sorted(waiting)} did not start within the startup timeout",
                    index=min(waiting),
                )
        return [answers[w] for w in range(len(self.conns))]

    def _gather_one(self, worker: int, kind: str, deadline: float) -> None:
        conn, proc = self.conns[worker], self.procs[worker]
        while not conn.poll(LIVENESS_POLL_S):
            if proc.exitcode is not None:
                raise self.died(worker, f"while restarting (waiting for {kind!r})")
            if time.monotonic() > deadline:
                raise WorkerTimeoutError(
                    f"Worker {worker} did not restart within the startup timeout", index=worker
                )
        msg = conn.recv()
        if msg[0] == "error":
            raise self.reraise(msg)

    # -- watching ---------------------------------------------------------------------------

    def first_dead(self) -> int | None:
        """The first worker whose process has exited, or ``None``."""
        for w, proc in enumerate(self.procs):
            if proc.exitcode is not None:
                return w
        return None

    def kill(self, worker: int) -> None:
        """Kill worker ``worker`` (stuck in its emulator) and reap it."""
        self.procs[worker].kill()
        self.procs[worker].join(5.0)

    def error_of(self, worker: int, what: str) -> BaseException:
        """The exception worker ``worker`` reported after flagging a failure during ``what``."""
        conn = self.conns[worker]
        msg = conn.recv() if conn.poll(1.0) else None
        if msg is None:
            return WorkerError(f"Worker {worker} failed during {what}", index=worker)
        return self.reraise(msg)

    def died(self, worker: int, when: str) -> WorkerDiedError:
        """The error that says how worker ``worker`` died."""
        proc = self.procs[worker]
        code = proc.exitcode
        if code is None:
            how = "closed its pipe"
        elif code < 0:
            how = f"was killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return WorkerDiedError(
            f"Worker {worker} (pid {proc.pid}) {how} {when}; the pool has been closed", worker
        )

    def reraise(self, msg: tuple) -> BaseException:
        """Rebuild a worker's exception in the parent, with the worker index and traceback."""
        _, worker, blob, type_name, text, tb = msg
        exc: BaseException | None = None
        if blob is not None:
            try:
                exc = pickle.loads(blob)
            except Exception:
                exc = None
        if exc is None:
            exc = WorkerError(f"{type_name}: {text}", index=worker)
        exc.__cause__ = RemoteTraceback(tb)
        if sys.version_info >= (3, 11):
            envs = self.envs(worker)
            which = f"env {envs[0]}" if len(envs) == 1 else f"envs {list(envs)}"
            exc.add_note(f"Raised in fastretro worker {worker} ({which}); the pool has been closed")
        if isinstance(exc, WorkerError) and exc.index is None:
            exc.index = worker
        return exc

    # -- stopping ---------------------------------------------------------------------------

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker (CLOSE, then kill what lingers) and free the shared memory."""
        deadline = time.monotonic() + timeout
        procs = [p for p in self.procs if p is not None]
        self._ask_to_close(procs, deadline)
        stopped = self._reap(procs, deadline)
        for conn in self.conns:
            if conn is not None:
                conn.close()
        self.procs, self.conns = [], []
        if self.handshake is not None:
            if stopped:  # a worker still running may yet post the semaphore
                self.handshake.destroy()
            self.handshake = None
        if self.buffers is not None:
            self.buffers.close()
            self.buffers = None

    def _ask_to_close(self, procs: list, deadline: float) -> None:
        """Send every worker CLOSE and wait for them to take it (until ``deadline``)."""
        if self.handshake is not None and all(p.exitcode is None for p in procs):
            a = self.buffers.arrays
            a["cmd"][:] = Command.CLOSE
            a["status"][:] = 0
            self.handshake.drain_parent()
            self.handshake.begin(len(a["cmd"]))
            self.handshake.wake()
            try:
                self.handshake.wait_parent(max(0.0, deadline - time.monotonic()))
            except BaseException:  # noqa: BLE001 - a second Ctrl-C must not leak workers
                pass
        elif self.handshake is None:
            # Workers that never attached wait for the parent's message on their pipe. Closing
            # it would not reach them (forked siblings hold copies of its end): say so instead.
            for conn in self.conns:
                if conn is None:
                    continue
                try:
                    conn.send(("close",))
                except (BrokenPipeError, OSError):
                    pass

    def _reap(self, procs: list, deadline: float) -> bool:
        """Join the workers, killing what lingers past ``deadline``; whether all have stopped."""
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
        # A worker killed (by us or by a signal) may have died while writing a log record.
        if any((p.exitcode or 0) < 0 for p in procs):
            logs.retire(self.ctx.get_start_method())
        return True


def start_method(pool_config) -> str:
    """The multiprocessing start method of ``pool_config``'s workers."""
    method = pool_config.start_method
    if method is None:
        method = "fork" if sys.platform.startswith("linux") else mp.get_all_start_methods()[0]
    return method


def compile_kernels(
    prep: Preprocessing,
    screen_shape: tuple[int, ...],
    row: np.ndarray | None = None,
    gray: bool = False,
) -> None:
    """Compile the workers' preprocessing kernels once, in the parent.

    Numba compiles on first call; doing that once here, with the same array types as the
    workers (a zero screen, a scratch row shaped like a shared one), fills numba's on-disk
    cache, so a worker started by spawn or forkserver then loads machine code in milliseconds
    instead of compiling, and a forked one finds it loaded (:func:`prepare_parent`).

    Args:
        prep: the pool's preprocessing.
        screen_shape: the emulator's screen (H, W, 3).
        row: one env's row of the shared observations (default: one of ``prep``'s shape).
        gray: also the one-channel pictures' kernels (ALE's).
    """
    if row is None:
        row = np.zeros(prep.buffer_shape(screen_shape), np.uint8)
    scratch = np.zeros_like(row)
    slot = np.zeros(1, np.int32)
    window = (0, 0, *screen_shape[:2])
    screen = np.zeros(screen_shape, np.uint8)
    writer = FrameWriter(prep, screen_shape, window, None, scratch, slot)
    if not (gray and prep.grayscale):
        writer.warm_up(screen)
        return
    # One-channel pictures: ALE's colour codes with its palette, or its gray where no palette
    # was found (fastretro/runtime/worker.py observation_picture).
    plane = np.zeros(screen_shape[:2], np.uint8)
    writer.warm_up(screen, plane)
    palette = np.zeros(256, np.uint8)
    FrameWriter(prep, screen_shape, window, None, scratch, slot, palette=palette).warm_up(
        screen, plane
    )


#: What a worker imports on its way to its first step, beyond what the pool's process has
#: imported by then (fastretro/runtime/worker.py), and what its backend adds (backends/).
WORKER_IMPORTS = (
    "fastretro.runtime._ext.worker_loop",
    "fastretro.runtime._ext.handshake",
    "fastretro.runtime.shm",
)
BACKEND_IMPORTS = {
    "stable-retro": ("fastretro.runtime.backends.retro", "stable_retro"),
    "ale": ("fastretro.runtime.backends.ale", "ale_py"),
    "libretro": (
        "fastretro.runtime.backends.libretro",
        "fastretro.runtime._ext.libretro",
        "stable_retro",
    ),
}


def prepare_parent(env_config, backend: str) -> None:
    """Do in the pool's process, before the first fork, what every worker would do for itself.

    A forked worker (the default start method on Linux) starts as a copy of this process and
    shares its pages until one side writes them: whatever is done here is done once, for all
    workers, and shared. Done here:

    - the preprocessing kernels compiled (numba): a worker that found them uncompiled loaded
      them from numba's on-disk cache, ~0.2 s and ~20 MB of LLVM's state of its own;
    - the modules a worker imports (its compiled loop, its backend, stable-retro);
    - the Genesis core read once for the headless frame's lookups (its hash and symbols).

    Nothing here changes what a worker does: it finds done what it would have done itself.
    Workers started by spawn or forkserver gain only the kernels' cache, filled before they
    start (bench/bench_size.py measures the rest).

    Args:
        env_config: the pool's :class:`~fastretro.config.EnvConfig`.
        backend: the emulator backend's name.
    """
    prep = env_config.preprocessing
    if env_config.observe and (prep.grayscale or prep.resize is not None):
        compile_kernels(prep, nominal_screen(prep), gray=backend == "ale")
    for name in (*WORKER_IMPORTS, *BACKEND_IMPORTS.get(backend, ())):
        try:
            importlib.import_module(name)
        except ImportError:
            pass  # the worker raises it, with its own message, where it matters
    genesis = backend in ("stable-retro", "libretro")
    if genesis and (env_config.skip_rendering or env_config.skip_audio):
        import stable_retro

        headless.read_core(os.path.join(stable_retro.core_path(), headless.GENESIS_CORE))


def nominal_screen(prep: Preprocessing) -> tuple[int, int, int]:
    """A screen shape ``prep`` can preprocess, to compile its kernels before any screen is seen.

    numba specialises a kernel on its arguments' dtypes, dimensions and contiguity, not on their
    sizes: any screen the crop and resize fit gives the types a real one gives. More than one
    pixel each way, so that views of it are strided as a real screen's are.
    """
    top, bottom, left, right = prep.crop
    h, w = prep.resize if prep.resize is not None else (1, 1)
    return (top + bottom + h + 16, left + right + w + 16, 3)
