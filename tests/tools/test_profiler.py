"""The pool's timing counters (VecRetroEnv.stats) and `fastretro profile`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import GAME

from fastretro import ClosedError
from fastretro.runtime.pool import VecRetroEnv
from fastretro.runtime.stats import PoolStats, Stopwatch
from fastretro.tools.profiler import advise, analyse, run_agent


def test_stats_count_steps_frames_and_resets_per_worker():
    with VecRetroEnv(GAME, 3, frameskip=3, max_episode_steps=5) as env:
        env.reset(seed=0)
        env.reset_stats()
        for _ in range(12):
            env.step(env.action_space.sample())
        st = env.stats()
    # 12 steps of 5-step episodes under NEXT_STEP autoreset: 2 autoreset steps (no frames).
    assert st.steps.tolist() == [10, 10, 10]
    assert st.frames.tolist() == [30, 30, 30]
    assert st.resets.tolist() == [2, 2, 2]
    assert (st.emulate_s > 0).all() and (st.ram_s > 0).all() and (st.obs_s > 0).all()
    assert (st.reset_s > 0).all() and (st.cpu_s >= 0).all()
    assert sum(st.phase_fractions().values()) == pytest.approx(1.0)
    assert 0.0 <= st.utilization <= 1.0
    assert st.parent_wait_s > 0 and st.wall_s >= st.parent_wait_s


def test_workers_count_their_wait_while_the_agent_thinks():
    with VecRetroEnv(GAME, 2, frameskip=1) as env:
        env.reset(seed=0)
        env.reset_stats()
        for _ in range(5):
            env.step(env.action_space.sample())
            time.sleep(0.05)  # the "agent"
        st = env.stats()
    # Each worker waited through the 5 sleeps of 50 ms (less whatever overlaps the clock reads).
    assert (st.wait_s >= 0.2).all(), st.wait_s
    assert st.busy_s.max() < st.wait_s.min()


def test_stats_read_the_workers_cpu_time():
    with VecRetroEnv(GAME, 2, frameskip=4) as env:
        env.reset(seed=0)
        env.reset_stats()
        for _ in range(150):  # 600 frames per worker: well over /proc's 10 ms resolution
            env.step(env.action_space.sample())
        st = env.stats()
    assert (st.cpu_s > 0.05).all(), st.cpu_s
    # A worker's CPU time cannot exceed its wall-clock phases by more than /proc's resolution.
    assert (st.cpu_s <= st.busy_s + st.wait_s + 0.05).all()
    assert 0.0 < st.utilization <= 1.0


def test_stats_without_observations_spend_nothing_on_frames():
    with VecRetroEnv(GAME, 2, observe=False) as env:
        env.reset(seed=0)
        for _ in range(5):
            env.step(env.action_space.sample())
        st = env.stats()
    assert (st.obs_s == 0).all()
    assert st.steps.tolist() == [5, 5]


def test_reset_stats_starts_the_counters_again():
    with VecRetroEnv(GAME, 2) as env:
        env.reset(seed=0)
        for _ in range(4):
            env.step(env.action_space.sample())
        env.reset_stats()
        assert env.stats().steps.tolist() == [0, 0]
        env.step(env.action_space.sample())
        assert env.stats().steps.tolist() == [1, 1]


def test_stats_after_close_raises():
    env = VecRetroEnv(GAME, 1)
    env.close()
    with pytest.raises(ClosedError, match=re.escape("Cannot call stats: the pool is closed")):
        env.stats()


def _stats(cpu, wait, parent_wait, wall, cores=2):
    n = len(cpu)
    z = np.zeros(n)
    return PoolStats(
        wall_s=wall,
        emulate_s=np.array(cpu),
        ram_s=z,
        obs_s=z,
        reset_s=z,
        wait_s=np.array(wait),
        cpu_s=np.array(cpu),
        steps=z.astype(int),
        frames=np.full(n, 100),
        resets=z.astype(int),
        parent_wait_s=parent_wait,
        cores=cores,
    )


def test_analyse_splits_the_parents_wall_clock_exactly():
    watch = Stopwatch()
    watch.seconds.update(inference=2.0, learning=3.0)
    # 4 workers on 2 cores used 8 CPU seconds: packed, 4 s of the parent's 4.5 s blocked.
    report = analyse("x", GAME, _stats([2.0] * 4, [1.0] * 4, 4.5, 10.0), watch, 10.0)
    assert report.env_work_s == pytest.approx(4.0)
    assert report.handshake_s == pytest.approx(0.5)
    assert report.other_s == pytest.approx(0.5)
    assert sum(sec for _, sec in report.rows()) == pytest.approx(10.0)
    assert report.emulator_busy == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("args", "start"),
    [
        ((0.95, 0.1, 0.0, 8, 2), "env-bound: the emulators keep 2 core(s) 95% busy"),
        ((0.30, 0.6, 0.1, 8, 2), "agent-bound: the agent takes 60% of the wall-clock"),
        ((0.30, 0.6, 0.1, 8, 2, 0.4), "learning-bound: updates take 40% of the wall-clock"),
        ((0.40, 0.1, 0.1, 1, 2), "under-subscribed: 1 env(s) on 2 cores"),
        ((0.50, 0.1, 0.4, 8, 2), "overhead-bound: 40% of the wall-clock"),
        ((0.70, 0.3, 0.1, 8, 2), "balanced: emulators 70% busy"),
    ],
)
def test_advice_names_the_bottleneck(args, start):
    assert advise(*args).startswith(start)


def test_profile_random_agent_writes_table_and_png(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "profile",
            "--agent",
            "random",
            "--seconds",
            "3",
            "--num-envs",
            "2",
            "--out",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "where the wall-clock went" in out.stdout
    assert "emulator cores busy" in out.stdout and "advice: " in out.stdout
    png = tmp_path / "profile.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    report = json.loads((tmp_path / "profile.json").read_text())
    parts = ("inference_s", "learning_s", "env_work_s", "handshake_s", "other_s")
    assert sum(report[k] for k in parts) == pytest.approx(report["wall_s"], rel=1e-6)
    assert report["frames"] > 0 and report["learning_s"] == 0.0


def my_agent(pool, watch, deadline):
    """A module:function agent for the profiler test."""
    while time.perf_counter() < deadline:
        with watch("inference"):
            actions = pool.action_space.sample()
        with watch("learning"):
            time.sleep(0.002)
        pool.step(actions)


def test_profile_runs_a_module_function_agent():
    stats, watch, wall = run_agent("test_profiler:my_agent", GAME, None, 2, 1.0)
    assert watch.seconds["learning"] > 0 and stats.steps.sum() > 0
    assert wall >= 1.0


def test_jerk_agent_profiles_without_frames():
    stats, watch, wall = run_agent("jerk", GAME, None, 2, 1.0)
    assert stats.steps.sum() > 0 and (stats.obs_s == 0).all()
    # Open loop, as `fastretro jerk` runs: its planning and its bookkeeping are timed.
    assert watch.seconds["inference"] > 0 and watch.seconds["learning"] > 0


def test_profile_ppo_counts_learning():
    pytest.importorskip("torch")
    stats, watch, wall = run_agent(
        "ppo", GAME, None, 2, 4.0, {"n_steps": 16, "n_minibatches": 2, "n_epochs": 1}
    )
    assert watch.seconds["inference"] > 0 and watch.seconds["learning"] > 0
    assert stats.steps.sum() >= 32


def test_profile_rejects_an_unknown_agent():
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "profile", "--agent", "dqn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert (
        "Expected --agent to be one of ['random', 'jerk', 'ppo', 'rainbow'] or module:function, "
        "got 'dqn'" in out.stderr
    )


@pytest.mark.parametrize("given", [False, True], ids=["default", "given"])
def test_a_learner_trains_in_a_private_folder_unless_given_one(monkeypatch, tmp_path, given):
    # A fixed name in a world-writable /tmp could be planted (a symlink) by another user.
    import os
    import stat
    import tempfile
    from types import SimpleNamespace

    from fastretro.agents import ppo2
    from fastretro.tools import profiler

    seen = {}

    def train(cfg, run_dir, **kwargs):
        info = os.lstat(run_dir)
        seen.update(dir=run_dir, mode=stat.S_IMODE(info.st_mode), uid=info.st_uid)
        assert stat.S_ISDIR(info.st_mode)

    monkeypatch.setattr(ppo2, "train", train)
    monkeypatch.setattr(profiler, "_merge", lambda snapshots: SimpleNamespace(wall_s=1.0))
    options = {"run_dir": str(tmp_path)} if given else {}
    run_agent("ppo", GAME, None, 1, 1.0, options)
    if given:
        assert seen["dir"] == str(tmp_path) and tmp_path.exists()
        return
    predictable = os.path.join(tempfile.gettempdir(), f"fastretro-profile-{os.getpid()}")
    assert seen["dir"] != predictable
    assert os.path.basename(seen["dir"]).startswith("fastretro-profile-")
    assert seen["mode"] == 0o700 and seen["uid"] == os.getuid()
    assert not os.path.exists(seen["dir"])  # thrown away with its checkpoints
