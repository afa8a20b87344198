"""A worker: its envs' emulators, their rows of the shared buffers, the compiled loop.

Life of a worker: create one emulator per env it runs (fastretro/runtime/backends/) -> report
each env's :class:`~fastretro.runtime.protocol.WorkerReady` on the pipe -> attach the parent's
shared segment (resetting its envs first when it replaces a dead worker) -> serve commands in
``fastretro.runtime._ext.worker_loop.run_loop`` until CLOSE, or until the parent disappears.
An exception anywhere is sent to the parent with its traceback, and its envs' commands are
completed so that the parent wakes up and re-raises it. :func:`serve` is that life, the same
for every transport; :func:`worker_main` first sets up a worker process around it (a worker
thread, fastretro/runtime/threads.py, calls :func:`serve` as it is).
"""

from __future__ import annotations

import functools
import gc
import logging
import logging.handlers
import os
import pickle
import select
import signal
import traceback

import numpy as np

from fastretro.runtime import actions
from fastretro.runtime.backends import Emulator, make_emulator
from fastretro.runtime.games import GameSetup
from fastretro.runtime.preprocess import FrameWriter
from fastretro.runtime.protocol import ActionMode, Status, WorkerReady

log = logging.getLogger(__name__)

# How often an idle worker checks that its parent still exists (seconds).
PARENT_POLL_S = 0.5


def error_payload(worker: int, exc: BaseException) -> tuple:
    """What crosses the pipe for an exception: the pickled exception (if possible) and its text."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return ("error", worker, blob, type(exc).__name__, str(exc), tb)


def scenario_plan(setup: GameSetup, engine: str):
    """The plan this env's worker evaluates itself, or ``None``: the emulator's own engine."""
    return setup.scenario_plan if engine == "auto" else None


def worker_main(
    worker: int,
    envs: range,
    config,
    setups: list[GameSetup],
    backend: str,
    autoreset: int,
    info_names: tuple[str, ...],
    conn,
    log_queue,
    parent_pid: int,
) -> None:
    """Entry point of worker ``worker``, which runs the envs ``envs`` (in the subprocess).

    Args:
        worker: this worker's index.
        envs: the pool's env indices this worker runs.
        config: the pool's :class:`~fastretro.config.EnvConfig`.
        setups: each of ``envs``'s :class:`GameSetup`.
        backend: the emulator backend's name.
        autoreset: the pool's :class:`~fastretro.runtime.protocol.Autoreset` code.
        info_names: the variables of the shared ``info`` rows, in column order.
        conn: this worker's end of its pipe to the parent.
        log_queue: where log records go (the parent's handlers), or ``None``.
        parent_pid: the parent's pid (a worker whose parent is gone exits).
    """
    prepare_process()
    # First, while the pool is certainly alive (it is waiting for this worker's "ready").
    parent = ParentWatch(parent_pid)
    # Ctrl-C goes to the whole process group: the parent turns it into KeyboardInterrupt and
    # closes the pool, so workers must not die of it half-way through a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _batch_scheduling()
    _route_logs(log_queue)
    from fastretro.runtime.shm import SharedBuffers

    try:
        serve(
            worker,
            envs,
            config,
            setups,
            backend,
            autoreset,
            info_names,
            conn,
            parent.alive,
            SharedBuffers.attach,
        )
    finally:
        parent.close()
        _flush_logs(log_queue)


def serve(
    worker: int,
    envs: range,
    config,
    setups: list[GameSetup],
    backend: str,
    autoreset: int,
    info_names: tuple[str, ...],
    conn,
    parent_alive,
    attach,
) -> None:
    """Worker ``worker``'s life once its process (or thread) is set up: start, attach, serve.

    The same code for every worker of a pool, whichever transport runs it: a worker process
    (:func:`worker_main`) or a thread of the pool's own process
    (:mod:`fastretro.runtime.threads`).

    Args:
        worker: this worker's index.
        envs: the pool's env indices this worker runs.
        config: the pool's :class:`~fastretro.config.EnvConfig`.
        setups: each of ``envs``'s :class:`GameSetup`.
        backend: the emulator backend's name.
        autoreset: the pool's :class:`~fastretro.runtime.protocol.Autoreset` code.
        info_names: the variables of the shared ``info`` rows, in column order.
        conn: this worker's end of its pipe to the parent.
        parent_alive: whether the pool still runs (checked while idle); False ends the worker.
        attach: ``attach(layout, name)``: the pool's segment as an object with ``arrays`` and
            ``close()``.
    """
    from fastretro.runtime._ext import worker_loop
    from fastretro.runtime._ext.handshake import Handshake

    buffers = handshake = None
    emulators: list = []
    try:
        tables, ready = _start_emulators(envs, setups, config, backend, emulators)
        conn.send(("ready", worker, ready))
        msg = _recv_or_orphaned(conn, parent_alive)
        if msg is None or msg[0] != "attach":
            return  # orphaned, or the pool gave up before attaching (("close",))
        _, layout, shm_name, restarting, spin = msg
        buffers = attach(layout, shm_name)
        a = buffers.arrays
        handshake = Handshake(a["sem"], a["counter"], a["queue"])
        steppers = [
            make_stepper(worker_loop, i, config, emu, table, setup, autoreset, info_names, a)
            for i, emu, table, setup in zip(envs, emulators, tables, setups)
        ]
        if restarting:
            # A replacement: its envs start new episodes before anyone reads them.
            for s in steppers:
                if a["arg"][s.index] >= 0:
                    s.set_rng(np.random.default_rng(int(a["arg"][s.index])))
                s.reset()
        conn.send(("attached", worker))
        log.debug("worker %d serving envs %s (pid %d)", worker, list(envs), os.getpid())

        def reseed(env, seed):
            steppers[env - envs.start].set_rng(np.random.default_rng(int(seed)))

        how = worker_loop.run_loop(
            steppers,
            handshake,
            a["cmd"],
            a["arg"],
            PARENT_POLL_S,
            parent_alive,
            reseed,
            spin,
        )
        log.debug("worker %d stopped: %s", worker, how)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        try:
            conn.send(error_payload(worker, exc))
        except (BrokenPipeError, OSError):
            pass
        if buffers is not None and handshake is not None:
            status, cmd = buffers.arrays["status"], buffers.arrays["cmd"]
            for env in envs:
                status[env] = Status.ERROR
                if cmd[env] != 0:
                    cmd[env] = 0
                    handshake.done(env)
    finally:
        for emu in emulators:
            emu.close()
        if buffers is not None:
            buffers.close()
        conn.close()


def prepare_process() -> None:
    """The first thing a worker does: keep the pages it shares with the pool's process shared.

    A forked worker starts with the pool's Python objects on pages it shares with the pool
    until it writes them. CPython's cyclic garbage collector writes into every object it
    examines, so the worker's first full collection (while its emulator starts) copied every
    page that holds one: ~26 of its ~54 private MB (bench/bench_size.py --breakdown).
    ``gc.freeze()`` moves the objects the worker has at this point to a generation no
    collection examines; what the worker creates is collected as before. Inherited objects it
    drops are still freed by their reference counts; only cycles among them stay, as they
    would have in the pool's process.
    """
    gc.freeze()


def _start_emulators(envs, setups, config, backend, emulators: list):
    """Each env's emulator, action table and :class:`WorkerReady`.

    Emulators are appended to ``emulators`` as they start, so a failure half-way still closes
    the ones started.
    """
    tables, ready = [], []
    for env, setup in zip(envs, setups):
        emu = make_emulator(backend, setup, config, env)
        emulators.append(emu)
        table = actions.build_table(
            actions.choose(config.actions, setup.buttons, setup.game), emu.data, setup.buttons
        )
        tables.append(table)
        ready.append(
            WorkerReady(
                screen_shape=observed_shape(emu),
                action_mode=int(table.mode),
                action_sizes=table.sizes,
                # The save state's size sizes the pool's snapshot slots (~1 MB Genesis).
                state_size=emu.state_capacity() if config.snapshot_best else 0,
                raw_screen=emu.screen().shape,  # uncropped, as snapshots keep it
                skips_rendering=emu.skips_drawing,
                skips_audio=emu.skips_audio,
                backend=emu.backend,
                observes_from=(
                    picture_name(emu, observation_picture(emu, config.grayscale)[0])
                    if config.observe
                    else ""
                ),
            )
        )
    return tables, ready


def make_stepper(worker_loop, env, config, emu, table, setup, autoreset, info_names, a):
    """Env ``env``'s compiled stepper over its rows of the shared arrays ``a``."""
    write_obs = write_final_obs = None
    if config.observe:
        row = a["obs"][env]
        picture, palette = observation_picture(emu, config.grayscale)
        write_obs = FrameWriter(
            config.preprocessing,
            emu.screen().shape,
            emu.window(),
            emu.rotate,
            row,
            a["slot"][env : env + 1],
            palette=palette,
            picture=picture,
        )
        # Make sure of the kernels now, so that the first step does not compile: a forked
        # worker finds them compiled in the memory it shares with the pool
        # (workers.prepare_parent); a spawned one loads them from numba's cache, which the pool
        # filled.
        write_obs.warm_up(emu.screen(), picture() if picture != emu.screen else None)
        direct = write_obs.direct_frame() if picture == emu.screen else None
        if direct is not None and emu.screen_into is not None:
            write_obs.picture = functools.partial(emu.screen_into, direct)

        def write_final_obs():
            np.copyto(a["final_obs"][env], write_obs.stack())

    per_frame = setup.scripted if config.per_frame_reward is None else config.per_frame_reward
    return worker_loop.EnvStepper(
        env,
        config,
        emu,
        table,
        scenario_plan(setup, config.scenario_engine),
        per_frame,
        autoreset,
        info_names,
        a,
        np.random.default_rng(),
        write_obs,
        write_final_obs,
        fire_mask(table, setup.buttons),
    )


def fire_mask(table, buttons) -> int:
    """The buttons of the game's FIRE action, or 0 where its action set has none.

    FIRE is the Atari 2600's button; a game has it when its action set can press it alone, as
    EnvPool decides ``use_fire_reset`` from ALE's action set.
    """
    if "BUTTON" not in buttons:
        return 0
    fire = 1 << list(buttons).index("BUTTON")
    if table.mode == ActionMode.INDEX and fire not in table.masks:
        return 0
    return fire


def observation_picture(emu: Emulator, grayscale: bool):
    """The emulator's picture an env's observations are made from, and its gray palette.

    Gray observations on an emulator with colour codes and a known palette (ALE) come from the
    codes, looked up as they are resized; else from its own gray picture where it has one (a
    third of RGB's bytes, the same values); else from RGB. The seam declares each of these
    (fastretro/runtime/backends/base.py), ``None`` where an emulator lacks it.

    Returns:
        ``(picture, palette)``: the emulator's method, and uint8 (256,) or ``None``.
    """
    if grayscale:
        if emu.screen_codes is not None and emu.gray_palette is not None:
            return emu.screen_codes, emu.gray_palette
        if emu.screen_gray is not None:
            return emu.screen_gray, None
    return emu.screen, None


def picture_name(emu: Emulator, picture) -> str:
    """The seam's name of ``picture``, one of :func:`observation_picture`'s pictures.

    ``"screen"`` (RGB), ``"screen_codes"`` or ``"screen_gray"``, as ``VecRetroEnv.observes_from``
    reports it (stable-retro's emulator hands over its ``get_screen``).
    """
    for name in ("screen_codes", "screen_gray"):
        if picture == getattr(emu, name):
            return name
    return "screen"


def observed_shape(emu: Emulator) -> tuple[int, ...]:
    """Shape of the screen an env shows (after the integration's crop and rotation)."""
    top, left, h, w = emu.window()
    if emu.rotate is None:
        return (h, w, 3)
    return emu.rotate(np.zeros((h, w, 3), np.uint8)).shape


def _batch_scheduling() -> None:
    # SCHED_BATCH: a woken worker does not preempt the running process. Without it, each of
    # the parent's wake-ups hands its core to the worker it woke, and waking 4 workers took
    # ~116 us instead of a few (bench/bench_parent.py, 2 cores); the worker starts a moment
    # later instead.
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass


class ParentWatch:
    """Whether the pool's process still runs, under every start method.

    Comparing ``os.getppid()`` with the pool's pid only works with fork and spawn: under
    forkserver a worker's parent is the fork server, which outlives the pool. A pidfd
    (Linux 5.3+) turns readable when its process exits, whoever that process's parent is; it
    is opened first thing in the worker, while the pool waits for it: a pool that died sooner
    makes the open fail (its pid is not reused within milliseconds). Without pidfds: the parent
    pid where the pool is the parent (fork, spawn), else whether a process of its pid exists.

    Args:
        pid: the pool's pid.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._fd: int | None = None
        self._poll = None
        self._gone = False
        self._direct = os.getppid() == pid
        if hasattr(os, "pidfd_open"):
            try:
                self._fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._gone = True
            except OSError:  # an older kernel, or a sandbox without the syscall
                self._fd = None
        if self._fd is not None:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def alive(self) -> bool:
        """Whether the pool still runs (one syscall: it runs in the idle wait only)."""
        if self._gone:
            return False
        if self._poll is not None:
            self._gone = bool(self._poll.poll(0))
        elif self._direct:
            self._gone = os.getppid() != self.pid
        else:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self._gone = True
            except PermissionError:  # a process of another user has that pid now: ours is gone
                self._gone = True
        return not self._gone

    def close(self) -> None:
        """Close the pidfd."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._poll = None


def _recv_or_orphaned(conn, parent_alive):
    while not conn.poll(PARENT_POLL_S):
        if not parent_alive():
            return None
    return conn.recv()


def _flush_logs(log_queue, timeout: float = 1.0) -> None:
    """Give the log queue's feeder thread ``timeout`` to deliver, then exit without it.

    multiprocessing joins a queue's feeder thread at exit, and the feeder writes under a lock
    shared by every process using the queue: a worker killed while holding it (a pool closed
    under Ctrl-C kills workers that do not exit in time) jams the queue, and every later
    worker would then hang at exit until its pool killed it too.
    """
    if log_queue is None:
        return
    log_queue.close()
    feeder = getattr(log_queue, "_thread", None)  # started by the first record put
    if feeder is not None:
        feeder.join(timeout)
    log_queue.cancel_join_thread()


def _route_logs(log_queue) -> None:
    # Records go to the parent, where a listener thread hands them to the parent's own
    # handlers (fastretro/runtime/logs.py); forked copies of those handlers are dropped.
    logger = logging.getLogger("fastretro")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.propagate = False
    if log_queue is not None:
        logger.addHandler(logging.handlers.QueueHandler(log_queue))
        logger.setLevel(logging.DEBUG)
