"""The worker subprocess: one emulator, its slice of the shared buffers, the compiled loop.

Life of a worker: create the stable-retro env (``render_mode=None``: the default "human" mode
needs a display) -> report the observation shape on the pipe -> attach the parent's shared
segment -> serve commands in ``fastretro._ext.worker_loop.run_loop`` until CLOSE, or until the
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

from fastretro.spec import EnvSpec, integrations

log = logging.getLogger("fastretro.worker")

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
    max_pool: bool
    per_frame_reward: bool | None
    max_episode_steps: int | None
    autoreset: int
    info_names: tuple[str, ...]
    num_buttons: int


def error_payload(index: int, exc: BaseException) -> tuple:
    """What crosses the pipe for an exception: the pickled exception (if possible) and its text."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
    except Exception:
        blob = None
    return ("error", index, blob, type(exc).__name__, str(exc), tb)


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


def filter_table(data, num_buttons: int) -> np.ndarray:
    """For every button mask, the buttons stable-retro's FILTERED action mode would press."""
    masks = np.arange(1 << num_buttons)
    filtered = np.array([data.filter_action(int(m)) for m in masks], dtype=np.int64)
    return ((filtered[:, None] >> np.arange(num_buttons)) & 1).astype(np.uint8)


class ScreenWriter:
    """Writes one env's observation row from the emulator's screen (crop and rotation applied)."""

    def __init__(self, env, out: np.ndarray) -> None:
        self.env = env
        self.out = out
        screen = env.em.get_screen()
        h, w = screen.shape[:2]
        x, y, cw, ch = env.data.crop_info(0)
        x1 = w if (not cw or x + cw > w) else x + cw
        y1 = h if (not ch or y + ch > h) else y + ch
        self.window = (slice(y, y1), slice(x, x1))
        self.rotated = env._rotation_steps() != 0

    def view(self, screen: np.ndarray) -> np.ndarray:
        """The cropped, rotated screen (a view where no rotation is needed)."""
        screen = screen[self.window]
        return self.env._apply_rotation(screen) if self.rotated else screen

    def __call__(self, screen: np.ndarray, prev: np.ndarray | None) -> None:
        """Write ``screen`` (max-pooled with ``prev`` if given) into the observation row."""
        if prev is None:
            np.copyto(self.out, self.view(screen))
        else:
            # Max-pool the last two frames: sprites that flicker on alternate frames stay visible.
            np.maximum(self.view(screen), self.view(prev), out=self.out)


def observation_shape(env) -> tuple[int, ...]:
    """Shape of the observation this env produces (after crop and rotation)."""
    return ScreenWriter(env, np.empty(0)).view(env.em.get_screen()).shape


def worker_main(
    index: int, spec: EnvSpec, opts: WorkerOptions, conn, log_queue, parent_pid: int
) -> None:
    """Entry point of worker ``index`` (runs in the subprocess)."""
    # Ctrl-C goes to the whole process group: the parent turns it into KeyboardInterrupt and
    # closes the pool, so workers must not die of it half-way through a batch.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _batch_scheduling()
    _route_logs(log_queue)
    from fastretro._ext import worker_loop
    from fastretro._ext.handshake import Handshake
    from fastretro.shm import SharedBuffers

    buffers = env = handshake = None
    try:
        env = make_retro_env(spec)
        conn.send(("ready", index, observation_shape(env)))
        msg = _recv_or_orphaned(conn, parent_pid)
        if msg is None:
            return
        _, layout, shm_name = msg
        buffers = SharedBuffers.attach(layout, shm_name)
        a = buffers.arrays
        handshake = Handshake(a["sem"], a["counter"])
        rng = np.random.default_rng()
        write_obs = ScreenWriter(env, a["obs"][index])

        def write_final_obs():
            np.copyto(a["final_obs"][index], a["obs"][index])

        stepper = worker_loop.EnvStepper(
            index,
            env,
            rng,
            {
                "frameskip": opts.frameskip,
                "sticky_prob": opts.sticky_prob,
                "max_pool": opts.max_pool,
                "per_frame_reward": (
                    spec.scripted if opts.per_frame_reward is None else opts.per_frame_reward
                ),
                "max_episode_steps": opts.max_episode_steps,
                "autoreset": opts.autoreset,
                "info_names": opts.info_names,
                "filter_table": filter_table(env.data, opts.num_buttons),
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
            env.close()
        if buffers is not None:
            buffers.close()
        conn.close()


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


def _route_logs(log_queue) -> None:
    # Records go to the parent, where a listener thread hands them to the
    # parent's own handlers (fastretro/logs.py); forked copies of those handlers are dropped.
    logger = logging.getLogger("fastretro")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    logger.propagate = False
    if log_queue is not None:
        logger.addHandler(logging.handlers.QueueHandler(log_queue))
        logger.setLevel(logging.DEBUG)
