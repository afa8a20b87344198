"""The worker subprocess: one emulator, its slice of the shared buffers, the compiled loop.

Life of a worker: create the stable-retro env (``render_mode=None``: the default "human" mode
needs a display) -> report the observation shape on the pipe -> attach the parent's shared
segment -> serve commands in ``fastretro.runtime._ext.worker_loop.run_loop`` until CLOSE, or until the
parent disappears. An exception anywhere is sent to the parent with its traceback, and the
batch it belongs to is completed so the parent wakes up and re-raises it.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import pickle
import signal
import traceback
from dataclasses import dataclass

import numpy as np

from fastretro.runtime import actions
from fastretro.runtime.games import EnvSpec, integrations
from fastretro.runtime.headless import find_headless_frame, find_silent_fm
from fastretro.runtime.preprocess import FrameWriter, Preprocessing

log = logging.getLogger("fastretro.runtime.worker")

#: Worker status codes in the shared ``status`` array.
STATUS_OK = 0
STATUS_ERROR = 1

# How often an idle worker checks that its parent still exists (seconds).
PARENT_POLL_S = 0.5


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker needs besides its EnvSpec; picklable, built once by the pool."""

    frameskip: int
    sticky_prob: float
    prep: Preprocessing
    observe: bool
    action_choice: actions.ActionChoice
    per_frame_reward: bool | None
    max_episode_steps: int | None
    autoreset: int
    info_names: tuple[str, ...]
    buttons: tuple[str, ...]
    allow_backtracking: bool
    reward_scale: float
    clip_reward: float | None
    record: tuple[str, ...] | None = None  # one movie folder per env
    scenario_engine: str = "auto"
    snapshot_best: bool = False  # keep each episode's best state (VecRetroEnv.best_snapshot)
    skip_rendering: bool = True  # frames no observation uses run without drawing (Genesis)
    skip_audio: bool = True  # no FM synthesis while the chip's timers are stopped (Genesis)


def error_payload(index: int, exc: BaseException) -> tuple:
    """What crosses the pipe for an exception: the pickled exception (if possible) and its text."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return ("error", index, blob, type(exc).__name__, str(exc), tb)


def scenario_plan(spec: EnvSpec, engine: str):
    """The plan this env's worker evaluates itself, or ``None``: stable-retro's ``update_ram``."""
    return spec.scenario_plan if engine == "auto" else None


def make_retro_env(spec: EnvSpec):
    """Create the one stable-retro env of this process."""
    import stable_retro

    kwargs = {"render_mode": None, "inttype": integrations()}
    if spec.scenario is not None:
        kwargs["scenario"] = spec.scenario
    state = spec.state if spec.state is not None else stable_retro.State.DEFAULT
    if spec.state is not None and os.path.isfile(spec.state):
        env = stable_retro.RetroEnv(spec.game, stable_retro.State.NONE, **kwargs)
        env.load_state(os.path.abspath(spec.state))
        return env
    return stable_retro.RetroEnv(spec.game, state, **kwargs)


def screen_window(env) -> tuple[int, int, int, int]:
    """The integration's crop of the screen, ``(top, left, height, width)``."""
    h, w = env.em.get_screen().shape[:2]
    x, y, cw, ch = env.data.crop_info(0)
    x1 = w if (not cw or x + cw > w) else x + cw
    y1 = h if (not ch or y + ch > h) else y + ch
    return y, x, y1 - y, x1 - x


def frame_writer(env, prep: Preprocessing, row: np.ndarray, slot: np.ndarray) -> FrameWriter:
    """The :class:`~fastretro.runtime.preprocess.FrameWriter` of this process's env."""
    rotate = env._apply_rotation if env._rotation_steps() != 0 else None
    return FrameWriter(prep, env.em.get_screen().shape, screen_window(env), rotate, row, slot)


def screen_shape(env) -> tuple[int, ...]:
    """Shape of the screen this env shows (after the integration's crop and rotation)."""
    top, left, h, w = screen_window(env)
    if env._rotation_steps() == 0:
        return (h, w, 3)
    return env._apply_rotation(np.zeros((h, w, 3), np.uint8)).shape


def worker_main(
    index: int, spec: EnvSpec, opts: WorkerOptions, conn, log_queue, parent_pid: int
) -> None:
    """Entry point of worker ``index`` (runs in the subprocess)."""
    # Ctrl-C goes to the whole process group: the parent turns it into KeyboardInterrupt and
    # closes the pool, so workers must not die of it half-way through a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _batch_scheduling()
    _route_logs(log_queue)
    from fastretro.runtime._ext import worker_loop
    from fastretro.runtime._ext.handshake import Handshake
    from fastretro.runtime.shm import SharedBuffers

    buffers = env = handshake = None
    try:
        env = make_retro_env(spec)
        if opts.record is not None:
            # One folder per env: stable-retro names movies GAME-STATE-NNNNNN.bk2 per episode.
            env.auto_record(opts.record[index])
        table = actions.build_table(opts.action_choice, env.data, opts.buttons)
        # The save state's size sizes the pool's snapshot slots (fixed per core; ~1 MB Genesis).
        state_size = len(env.em.get_state()) if opts.snapshot_best else 0
        raw_screen = env.em.get_screen().shape  # uncropped, as snapshots keep it
        headless = find_headless_frame() if opts.skip_rendering else None
        silent_fm = find_silent_fm() if opts.skip_audio else None
        if silent_fm is not None:
            worker_loop.install_silent_fm(silent_fm)
        ready = (
            screen_shape(env),
            table.mode,
            table.sizes,
            state_size,
            raw_screen,
            headless is not None,
            silent_fm is not None,
        )
        conn.send(("ready", index, ready))
        msg = _recv_or_orphaned(conn, parent_pid)
        if msg is None or msg[0] != "attach":
            return  # orphaned, or the pool gave up before attaching (("close",))
        _, layout, shm_name = msg
        buffers = SharedBuffers.attach(layout, shm_name)
        a = buffers.arrays
        handshake = Handshake(a["sem"], a["counter"], a["queue"] if a["queue"].size else None)
        handshake.bind(index)
        rng = np.random.default_rng()
        write_obs = write_final_obs = None
        if opts.observe:
            write_obs = frame_writer(env, opts.prep, a["obs"][index], a["slot"][index : index + 1])
            # Load the kernels now (from numba's cache, which the parent filled) so the first
            # step does not compile.
            write_obs.warm_up(env.em.get_screen())

            def write_final_obs():
                np.copyto(a["final_obs"][index], write_obs.stack())

        stepper = worker_loop.EnvStepper(
            index,
            env,
            rng,
            {
                "frameskip": opts.frameskip,
                "sticky_prob": opts.sticky_prob,
                "max_pool": opts.prep.max_pool,
                "per_frame_reward": (
                    spec.scripted if opts.per_frame_reward is None else opts.per_frame_reward
                ),
                "max_episode_steps": opts.max_episode_steps,
                "autoreset": opts.autoreset,
                "info_names": opts.info_names,
                "num_buttons": len(opts.buttons),
                "action_mode": table.mode,
                "action_masks": table.masks,
                "action_offsets": table.offsets,
                "allow_backtracking": opts.allow_backtracking,
                "reward_scale": opts.reward_scale,
                "clip_reward": opts.clip_reward,
                "record": opts.record is not None,
                "scenario_plan": scenario_plan(spec, opts.scenario_engine),
                "snapshot_best": opts.snapshot_best,
                "headless": headless,
            },
            a,
            write_obs,
            write_final_obs,
        )
        conn.send(("attached", index))
        log.debug("worker %d serving %s (pid %d)", index, spec.game, os.getpid())

        def reseed(seed):
            stepper.set_rng(np.random.default_rng(int(seed)))

        how = worker_loop.run_loop(
            stepper,
            handshake,
            a["cmd"],
            a["arg"],
            index,
            PARENT_POLL_S,
            lambda: os.getppid() == parent_pid,
            reseed,
        )
        log.debug("worker %d stopped: %s", index, how)
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent
        try:
            conn.send(error_payload(index, exc))
        except (BrokenPipeError, OSError):
            pass
        if buffers is not None and handshake is not None:
            buffers.arrays["status"][index] = STATUS_ERROR
            handshake.done()
    finally:
        if env is not None:
            env.stop_record()  # closes the current episode's movie, so it is a complete file
            env.close()
        if buffers is not None:
            buffers.close()
        conn.close()
        _flush_logs(log_queue)


def _batch_scheduling() -> None:
    # SCHED_BATCH: a woken worker does not preempt the running process. Without it, each of
    # the parent's wake-ups hands its core to the worker it woke, and waking 4 workers took
    # ~116 us instead of a few (measured on 2 cores); the worker starts a moment later instead.
    if hasattr(os, "sched_setscheduler"):
        try:
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
        except OSError:
            pass


def _recv_or_orphaned(conn, parent_pid: int):
    while not conn.poll(PARENT_POLL_S):
        if os.getppid() != parent_pid:
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
    # Records go to the parent, where a listener thread hands them to the
    # parent's own handlers (fastretro/runtime/logs.py); forked copies of those handlers are dropped.
    logger = logging.getLogger("fastretro")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.propagate = False
    if log_queue is not None:
        logger.addHandler(logging.handlers.QueueHandler(log_queue))
        logger.setLevel(logging.DEBUG)
