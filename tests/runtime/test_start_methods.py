"""Every start method runs a pool: idle workers wait for their pool, and exit once it is gone."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import GAME

from fastretro import VecRetroEnv
from fastretro.runtime import shm
from fastretro.runtime.worker import PARENT_POLL_S, ParentWatch

METHODS = ["fork", "forkserver", "spawn"]


@pytest.mark.parametrize("method", METHODS)
def test_idle_workers_outlive_several_parent_polls(method):
    # Under forkserver a worker's parent is the fork server: workers that compared getppid()
    # with the pool's pid took the pool for dead after one poll and exited.
    with VecRetroEnv(GAME, 2, start_method=method) as env:
        env.reset(seed=0)
        time.sleep(6 * PARENT_POLL_S + 0.2)
        obs, *_ = env.step(np.zeros((2, 12), np.uint8))
        assert obs.shape[0] == 2
        assert all(p.exitcode is None for p in env._workers.procs)


_CHILD = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    from fastretro import VecRetroEnv
    env = VecRetroEnv("Airstriker-Genesis-v0", 2, start_method=sys.argv[1])
    env.reset()
    env.step(np.zeros((2, 12), np.uint8))
    print(*[p.pid for p in env._workers.procs], flush=True)
    time.sleep(60)
    """
)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] == "Z"  # exited, not yet reaped
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("method", METHODS)
def test_workers_exit_when_their_pool_is_killed(method):
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, method], stdout=subprocess.PIPE, text=True
    )
    try:
        workers = list(map(int, proc.stdout.readline().split()))
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(map(_gone, workers)):
            time.sleep(0.1)
        assert [p for p in workers if not _gone(p)] == []
    finally:
        proc.kill()
        proc.wait()
        # What a SIGKILLed pool leaves is the next pool's to reclaim (test_errors.py checks it).
        shm.cleanup_orphans()


def test_parent_watch_sees_a_process_exit():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        watch = ParentWatch(child.pid)
        assert watch.alive()
        child.kill()
        child.wait()
        assert not watch.alive()
        watch.close()
    finally:
        child.kill()
        child.wait()


def test_parent_watch_of_a_pid_already_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    watch = ParentWatch(child.pid)
    assert not watch.alive()
    watch.close()
