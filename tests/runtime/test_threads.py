"""The in-process transport (fastretro/runtime/threads.py): a pool's workers as threads.

The contract's own tests run on it too (tests/runtime/test_contract.py); here: it gives what
the process pool gives, bit for bit; its worker code runs in the calling process; and what a
thread cannot do is refused or reported, each with its message.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from conftest import GAME, own_segments

from fastretro import InvalidArgumentError, PoolConfig, VecRetroEnv, WorkerTimeoutError

ATARI = "Pong-Atari2600-v0"
PONG_BUTTONS = 8


@pytest.fixture
def ale():
    """ALE's emulator class (the backend that runs several envs in one process)."""
    pytest.importorskip("ale_py", reason="ALE is an optional extra: pip install fastretro[atari]")
    from fastretro.runtime.backends.ale import AleEmulator

    return AleEmulator


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fastretro-worker")]


# -- the same results ----------------------------------------------------------------------


@pytest.mark.parametrize("envs_per_worker", [1, 3])
def test_threads_give_what_processes_give_bit_for_bit(ale, envs_per_worker):
    # Three envs in three threads, or one thread stepping all three, beside three processes:
    # the same observations, rewards and episode ends for the same seed and actions.
    options = dict(frameskip=4, sticky_prob=0.25, max_episode_steps=100, seed=3)
    # The processes first: nothing forks while this process runs worker threads.
    procs = VecRetroEnv(ATARI, 3, backend="ale", **options)
    threads = VecRetroEnv(
        ATARI, 3, backend="ale", workers="threads", envs_per_worker=envs_per_worker, **options
    )
    try:
        assert threads.pool_config.num_workers == 3 // envs_per_worker
        rng = np.random.default_rng(0)
        obs_p, _ = procs.reset()
        obs_t, _ = threads.reset()
        np.testing.assert_array_equal(obs_t, obs_p)
        ended = 0
        for _ in range(300):
            actions = rng.integers(0, 2, (3, PONG_BUTTONS), dtype=np.uint8)
            *p, _ = procs.step(actions)
            *t, _ = threads.step(actions)
            for a, b in zip(t, p):
                np.testing.assert_array_equal(a, b)
            ended += int(p[2].sum() + p[3].sum())
        assert ended >= 6  # every env ran through episode ends (and their autoresets)
    finally:
        threads.close()
        procs.close()
    assert worker_threads() == []


# -- the worker runs where you debug ----------------------------------------------------------


def test_worker_code_runs_in_the_calling_process(ale, monkeypatch):
    # What a breakpoint in the emulator sees: this process, another thread.
    seen = set()
    frame = ale.frame

    def observed_frame(self, draw=True):
        seen.add((os.getpid(), threading.get_ident()))
        frame(self, draw)

    monkeypatch.setattr(ale, "frame", observed_frame)
    env = VecRetroEnv(ATARI, 2, backend="ale", workers="threads", observe=False)
    try:
        assert env.worker_pids == (os.getpid(),) * env.pool_config.num_workers
        env.reset()
        env.step(np.zeros((2, PONG_BUTTONS), np.uint8))
        assert {pid for pid, _ in seen} == {os.getpid()}
        assert threading.get_ident() not in {ident for _, ident in seen}
        assert np.isfinite(env.stats().cpu_s).all()  # each thread's own CPU time
    finally:
        env.close()


def test_a_worker_exception_is_raised_in_the_caller_as_itself(ale, monkeypatch):
    frame, fail = ale.frame, threading.Event()

    def failing_frame(self, draw=True):
        if fail.is_set():
            raise ValueError("boom")
        frame(self, draw)

    monkeypatch.setattr(ale, "frame", failing_frame)
    env = VecRetroEnv(ATARI, 1, backend="ale", workers="threads", observe=False)
    env.reset()
    fail.set()
    with pytest.raises(ValueError, match="boom") as info:
        env.step(np.zeros((1, PONG_BUTTONS), np.uint8))
    assert "Raised in fastretro worker 0 (env 0)" in "".join(getattr(info.value, "__notes__", []))
    assert env.closed and worker_threads() == []


def test_a_stuck_worker_thread_times_out_and_closes_the_pool(ale, monkeypatch, caplog):
    frame, stuck = ale.frame, threading.Event()
    release = threading.Event()

    def stuck_frame(self, draw=True):
        if stuck.is_set():
            release.wait(30)
        frame(self, draw)

    monkeypatch.setattr(ale, "frame", stuck_frame)
    env = VecRetroEnv(ATARI, 1, backend="ale", workers="threads", observe=False, step_timeout=0.3)
    threads = worker_threads()
    try:
        env.reset()
        stuck.set()
        with pytest.raises(
            WorkerTimeoutError,
            match=re.escape(
                "Workers [0] did not finish step within 0.3 s; the pool has been closed"
            ),
        ):
            env.step(np.zeros((1, PONG_BUTTONS), np.uint8))
        assert env.closed
        assert "did not stop, and a thread cannot be killed" in caplog.text
    finally:
        release.set()
    for t in threads:  # it ends once its emulator returns: CLOSE is waiting for it
        t.join(10)
    assert worker_threads() == []


# -- what threads cannot do -------------------------------------------------------------------


def test_restart_is_refused_with_threads():
    message = (
        "Expected on_worker_failure='raise' with workers='threads', got 'restart': a thread "
        "cannot be killed, so a stuck worker thread cannot be replaced (use "
        "workers='processes' to restart workers)"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        VecRetroEnv(GAME, 1, workers="threads", on_worker_failure="restart")
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        PoolConfig(workers="threads").replace(on_worker_failure="restart")


def test_stable_retro_runs_one_env_in_one_in_process_pool():
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            "Expected num_envs=1 with workers='threads' on the stable-retro backend "
            "(stable-retro allows one emulator per process, and every thread is in this one), "
            "got 2: use workers='processes' (the default) for more envs, or an Atari game on "
            "backend='ale', which runs several in one process"
        ),
    ):
        VecRetroEnv(GAME, 2, workers="threads", backend="stable-retro")
    env = VecRetroEnv(GAME, 1, workers="threads", observe=False, backend="stable-retro")
    try:
        env.reset()
        env.step(np.zeros((1, 12), np.uint8))
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                "Cannot open a second pool with workers='threads' on the stable-retro backend in "
                "this process: stable-retro allows one emulator per process, and an open "
                "in-process pool holds it. Close that pool first, or use workers='processes'"
            ),
        ):
            VecRetroEnv(GAME, 1, workers="threads", backend="stable-retro")
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                "Cannot fork stable-retro workers while a pool with workers='threads' holds a "
                "stable-retro emulator in this process"
            ),
        ):
            VecRetroEnv(GAME, 1, backend="stable-retro")
    finally:
        env.close()
    # Closed, its emulator is gone: another in-process pool, or forked workers, may run now.
    for workers in ("threads", "processes"):
        with VecRetroEnv(GAME, 1, workers=workers, observe=False, backend="stable-retro") as again:
            again.reset()
            again.step(np.zeros((1, 12), np.uint8))


_UNCLOSED = textwrap.dedent(
    """
    import numpy as np
    from fastretro import VecRetroEnv
    env = VecRetroEnv("Pong-Atari2600-v0", 2, backend="ale", workers="threads")
    env.reset()
    env.step(np.zeros((2, 8), np.uint8))
    print(env._workers.buffers.name, flush=True)
    """
)


def test_an_unclosed_in_process_pool_ends_cleanly_at_exit(ale):
    done = subprocess.run(
        [sys.executable, "-c", _UNCLOSED], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "leaked" not in done.stderr, done.stderr
    assert not os.path.exists(f"/dev/shm/{done.stdout.strip()}")
    assert own_segments() == []
