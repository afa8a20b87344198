"""The RL Zoo (rl_zoo3) trains on the pool through its --gym-packages flag."""

from __future__ import annotations

import csv
import glob
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip(
    "rl_zoo3",
    reason="rl_zoo3 is installed apart (its moviepy pin downgrades pillow): pip install "
    '-e ".[zoo]" && pip install --no-deps "rl_zoo3>=2.9,<3" "sb3-team-hf-integration>=3,<4"',
)
pytest.importorskip("ale_py", reason="the Zoo's Atari ids come from ale-py: pip install ale-py")

from stable_baselines3.common.vec_env import VecEnv  # noqa: E402

from fastretro.errors import InvalidArgumentError  # noqa: E402
from fastretro.integrations import zoo  # noqa: E402


def test_atari_wrapper_arguments_become_the_pools():
    wrapper = [{zoo.ATARI_WRAPPER: {"noop_max": 0, "terminal_on_life_loss": False}}]
    env, pool = zoo.pool_options(wrapper, {"full_action_space": True, "batch_size": None})
    assert env == {"noop_max": 0, "episodic_life": False, "actions": "ale_full"}
    assert pool == {"batch_size": None}
    assert zoo.pool_options(zoo.ATARI_WRAPPER, None) == ({}, {})


def test_a_wrapper_the_workers_cannot_run_is_refused():
    with pytest.raises(InvalidArgumentError, match="Expected env_wrapper"):
        zoo.pool_options("rl_zoo3.wrappers.TimeFeatureWrapper", None)


def test_only_noframeskip_ids_go_to_the_pool():
    assert zoo.atari_game("BreakoutNoFrameskip-v4") == "Breakout"
    assert zoo.atari_game("CartPole-v1") is None
    assert zoo.atari_game("ALE/Breakout-v5") is None


class _Lives(VecEnv):
    """Two envs: env 0 loses a life on steps 2 and 4, and its game ends on step 5."""

    def __init__(self):
        import gymnasium

        space = gymnasium.spaces.Box(0, 255, (1,), np.uint8)
        super().__init__(2, space, gymnasium.spaces.Discrete(2))
        self.t = 0

    def reset(self):
        self.t = 0
        return np.zeros((2, 1), np.uint8)

    def step_async(self, actions):
        pass

    def step_wait(self):
        self.t += 1
        done = np.array([self.t in (2, 4, 5), False])
        infos = [
            {"reward": 3.0, "game_over": self.t == 5, "TimeLimit.truncated": False},
            {"reward": 3.0, "game_over": False, "TimeLimit.truncated": False},
        ]
        return np.zeros((2, 1), np.uint8), np.ones(2), done, infos

    def close(self):
        pass

    def get_attr(self, name, indices=None):
        raise AttributeError(name)

    def set_attr(self, name, value, indices=None):
        pass

    def env_method(self, name, *args, indices=None, **kwargs):
        pass

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False, False]


def test_game_monitor_counts_games_and_raw_scores(tmp_path):
    env = zoo.GameMonitor(_Lives(), frameskip=4, filename=str(tmp_path))
    env.reset()
    episodes = []
    for _ in range(6):
        _, _, _, infos = env.step(np.zeros(2, np.int64))
        episodes += [info["episode"] for info in infos if "episode" in info]
    env.close()
    assert [(e["r"], e["l"]) for e in episodes] == [(15.0, 20)]
    with open(tmp_path / "monitor.csv") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    assert [(float(r["r"]), int(r["l"])) for r in rows] == [(15.0, 20)]


def test_pool_monitor_logs_whole_games():
    env = zoo.make_pool_vec_env("Breakout", zoo.ATARI_WRAPPER)(None, n_envs=2, seed=0)
    try:
        env.reset()
        ends = episodes = 0
        for _ in range(600):
            _, _, dones, infos = env.step(np.ones(2, np.int64))  # FIRE: the ball is served
            ends += int(dones.sum())
            episodes += sum("episode" in info for info in infos)
        assert episodes >= 2
        assert ends >= 5 * episodes  # Breakout's five lives: five training episodes a game
    finally:
        env.close()


def test_zoo_trains_ppo_on_the_pool_with_one_flag(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl_zoo3.train",
            "--algo",
            "ppo",
            "--env",
            "BreakoutNoFrameskip-v4",
            "--gym-packages",
            "fastretro.integrations.zoo",
            "-n",
            "2048",
            "--seed",
            "1",
            # The Zoo's evaluation runs too: one whole game (five lives) on a pool of its own.
            "--eval-freq",
            "1024",
            "--eval-episodes",
            "1",
            "-f",
            str(tmp_path),
            "-params",
            "n_envs:4",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # The Zoo's stock Atari stack, over the pool: 84x84 gray frames, stacked and transposed.
    assert "Stacking 4 frames" in out.stdout
    assert "Wrapping the env in a VecTransposeImage" in out.stdout
    assert "fps" in out.stdout and "total_timesteps" in out.stdout
    assert "Eval num_timesteps=" in out.stdout, "the evaluation finished a whole game"
    run = tmp_path / "ppo" / "BreakoutNoFrameskip-v4_1"
    assert (run / "BreakoutNoFrameskip-v4.zip").exists()
    assert glob.glob(str(run / "*monitor.csv"))
