"""fastretro eval: the contest's results folder, checked file by file."""

from __future__ import annotations

import csv
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import GAME

from fastretro import InvalidArgumentError
from fastretro.contest.evaluate import RandomAgent, evaluate, load_agent
from fastretro.contest.movies import replay

pytest.importorskip("stable_baselines3", reason="monitor.csv is checked with SB3's load_results")
from stable_baselines3.common.monitor import load_results  # noqa: E402


class FiringAgent(RandomAgent):
    """Random, but always firing: Airstriker then scores within a short episode."""

    def act(self, observations):
        actions = super().act(observations)
        actions[:, 0] = 1
        return actions


def test_random_agent_results_folder_is_complete_and_consistent(tmp_path):
    results = str(tmp_path / "results")
    score = evaluate(
        FiringAgent, [(GAME, None)], results, timesteps=130, max_episode_steps=60, progress=False
    )
    level = os.path.join(results, f"{GAME}-default")
    monitor = load_results(level)
    # Two finished episodes, then the one the budget cut short.
    assert monitor["l"].tolist() == [60, 60, 10]
    with open(os.path.join(results, "score.json")) as f:
        on_disk = json.load(f)
    assert on_disk == score
    assert score["levels"][f"{GAME}-default"]["score"] == pytest.approx(monitor["r"].mean())
    assert score["score"] == pytest.approx(monitor["r"].mean())
    assert (
        score["stopped_by"] == "budget" and score["levels"][f"{GAME}-default"]["timesteps"] == 130
    )
    with open(os.path.join(level, "log.csv")) as f:
        assert list(csv.reader(f))[0] == ["l", "t"]
    movies = sorted(glob.glob(os.path.join(level, "bk2", "*.bk2")))
    assert [os.path.basename(m) for m in movies] == [f"{GAME}-Level1-{n:06d}.bk2" for n in range(3)]
    for movie, (reward, length) in zip(movies, zip(monitor["r"], monitor["l"])):
        result = replay(movie)
        assert result["reward"] == reward and result["frames"] == 4 * length
    assert monitor["r"].max() > 0
    assert os.path.getsize(os.path.join(results, "eval.log")) > 0


def test_log_csv_has_a_row_every_1000_steps(tmp_path):
    evaluate(
        RandomAgent,
        [(GAME, None)],
        str(tmp_path),
        timesteps=2000,
        max_episode_steps=4500,
        progress=False,
    )
    with open(os.path.join(tmp_path, f"{GAME}-default", "log.csv")) as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["l", "1000", "2000"]
    assert float(rows[1][1]) < float(rows[2][1])


def test_wall_limit_ends_the_run_cleanly(tmp_path):
    score = evaluate(
        RandomAgent,
        [(GAME, None)],
        str(tmp_path),
        timesteps=10**6,
        wall_limit_s=1.0,
        progress=False,
    )
    assert score["stopped_by"] == "wall-limit"
    level = os.path.join(tmp_path, f"{GAME}-default")
    monitor = load_results(level)
    # Every episode is a row and a closed movie, the one the clock cut short included.
    assert len(glob.glob(os.path.join(level, "bk2", "*.bk2"))) == len(monitor) >= 1
    assert monitor["t"].iloc[-1] >= 1.0
    assert monitor["l"].sum() == score["levels"][f"{GAME}-default"]["timesteps"] < 10**6


def test_eval_cli_prints_the_score(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "eval",
            "--agent",
            "random",
            "--game",
            GAME,
            "--timesteps",
            "50",
            "--max-episode-steps",
            "20",
            "--results",
            str(tmp_path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (
        json.loads(out.stdout.strip().splitlines()[-1])["levels"][f"{GAME}-default"]["episodes"]
        == 3
    )


def _raises(observation_space, action_space):
    raise RuntimeError("no model file")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--agent", "nosuchmodule:make"],
            "Cannot import the agent module 'nosuchmodule': "
            "ModuleNotFoundError: No module named 'nosuchmodule'",
        ),
        (["--agent", "json:nosuch"], "'json' has no callable 'nosuch'"),
        (
            ["--agent", "smart"],
            "Expected --agent to be one of ['jerk', 'ppo2:PATH', 'rainbow:PATH', 'random', "
            "'world_models:PATH'] or module:factory, got 'smart'",
        ),
        (
            ["--agent", "test_evaluate:_raises"],
            "The agent factory raised RuntimeError: no model file",
        ),
        (["--wall-limit", "soon"], "Expected a duration such as 12h, 30m or 90s, got 'soon'"),
    ],
)
def test_bad_eval_input_is_one_line_and_exit_2(tmp_path, args, message):
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.path.dirname(here)])}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "eval",
            "--timesteps",
            "5",
            "--results",
            str(tmp_path),
            "--no-progress",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == f"fastretro eval: {message}"


def test_unwritable_results_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InvalidArgumentError, match="The results folder .* is not writable"):
        evaluate(RandomAgent, [(GAME, None)], str(blocker / "results"), timesteps=5, progress=False)


def test_agents_may_not_change_the_rules():
    def factory(o, a):
        return RandomAgent(o, a)

    factory.env_options = {"frameskip": 1}
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("The agent's env_options may not set the contest's rules: ['frameskip']"),
    ):
        evaluate(factory, [(GAME, None)], "/tmp/unused-results", timesteps=5, progress=False)


def test_load_agent_finds_builtins():
    assert load_agent("random") is RandomAgent
    assert np.all(
        np.isin(
            RandomAgent(None, __import__("gymnasium").spaces.MultiBinary((2, 12))).act(None), [0, 1]
        )
    )


def test_replay_check_compares_each_movie_with_its_monitor_row(tmp_path):
    evaluate(
        FiringAgent,
        [(GAME, None)],
        str(tmp_path),
        timesteps=70,
        max_episode_steps=60,
        progress=False,
    )
    movies = sorted(glob.glob(os.path.join(tmp_path, f"{GAME}-default", "bk2", "*.bk2")))
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "replay", "--check", "--json", *movies],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    checks = [json.loads(line)["check"] for line in out.stdout.strip().splitlines()]
    assert [c["ok"] for c in checks] == [True, True]
    assert [c["monitor_steps"] for c in checks] == [60, 10]


def test_several_levels_evaluate_in_parallel_each_with_its_folder(tmp_path):
    score = evaluate(
        RandomAgent,
        [(GAME, None), (GAME, "Level1")],
        str(tmp_path),
        timesteps=30,
        max_episode_steps=10,
        progress=False,
    )
    assert sorted(score["levels"]) == [f"{GAME}-Level1", f"{GAME}-default"]
    for name in score["levels"]:
        assert len(load_results(os.path.join(tmp_path, name))) == 3
        assert len(glob.glob(os.path.join(tmp_path, name, "bk2", "*.bk2"))) == 3


def test_jerk_evaluates_by_name(tmp_path):
    score = evaluate(
        load_agent("jerk"),
        [(GAME, None)],
        str(tmp_path),
        timesteps=150,
        max_episode_steps=50,
        progress=False,
    )
    assert score["levels"][f"{GAME}-default"]["episodes"] == 3
    assert len(glob.glob(os.path.join(tmp_path, f"{GAME}-default", "bk2", "*.bk2"))) == 3
