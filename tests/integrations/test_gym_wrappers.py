"""gymnasium's vector wrappers on the pool, its info convention, and the baselines call shape."""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium
import gymnasium.wrappers.vector as vector_wrappers
import numpy as np
import pytest
from conftest import GAME
from gymnasium.vector import AutoresetMode

from fastretro import VecRetroEnv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPE = (224, 320, 3)
FIRE = 0  # "B" on the Genesis pad: Airstriker's fire button


def firing(steps, num_envs=2, seed=0):
    """Random buttons with fire held: Airstriker scores within ~40 steps at frameskip 4."""
    acts = np.random.default_rng(seed).integers(0, 2, (steps, num_envs, 12), dtype=np.uint8)
    acts[..., FIRE] = 1
    return acts


def check_info_convention(infos, num_envs):
    """Every ``key`` has a bool ``_key`` mask of shape (num_envs,) and one entry per env."""
    for key, value in infos.items():
        if key.startswith("_"):
            assert key[1:] in infos, f"mask {key} without its key"
            continue
        mask = infos[f"_{key}"]
        assert mask.dtype == bool and mask.shape == (num_envs,), key
        if isinstance(value, dict):
            check_info_convention(value, num_envs)
        else:
            assert len(value) == num_envs, key


# -- episode statistics ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_record_episode_statistics_counts_truncated_episodes(mode):
    with VecRetroEnv(GAME, 2, frameskip=4, max_episode_steps=60, autoreset_mode=mode) as pool:
        env = vector_wrappers.RecordEpisodeStatistics(pool)
        env.reset(seed=0)
        returns = np.zeros(2)
        for a in firing(60):
            _, rewards, terminated, truncated, infos = env.step(a)
            returns += rewards
        assert truncated.all() and not terminated.any()
        assert infos["_episode"].tolist() == [True, True]
        assert infos["episode"]["l"].tolist() == [60, 60]
        np.testing.assert_array_equal(infos["episode"]["r"], returns)
        assert returns.min() > 0, "the episodes must score for the returns to mean anything"
        assert env.episode_count == 2 and list(env.length_queue) == [60, 60]
        # The next episode counts from its first step, whichever the autoreset mode.
        steps = 61 if mode == AutoresetMode.NEXT_STEP else 60
        for a in firing(steps, seed=1):
            _, _, _, truncated, infos = env.step(a)
        assert infos["episode"]["l"].tolist() == [60, 60]


def test_transform_reward_and_clip_reward():
    with VecRetroEnv(GAME, 2, frameskip=4) as pool:
        seen = []

        def double(rewards):
            seen.append(rewards.copy())
            return 2 * rewards

        env = vector_wrappers.ClipReward(
            vector_wrappers.TransformReward(pool, double), min_reward=0.0, max_reward=30.0
        )
        env.reset(seed=0)
        for a in firing(60):
            _, rewards, *_ = env.step(a)
            np.testing.assert_array_equal(rewards, np.clip(2 * seen[-1], 0.0, 30.0))
        raw = np.stack(seen)
        assert raw.dtype == np.float64 and raw.shape == (60, 2)
        assert raw.max() >= 20, "a kill scores 20: the clip must have had something to clip"


def test_normalize_reward_and_observation_run():
    with VecRetroEnv(GAME, 2, frameskip=4) as pool:
        env = vector_wrappers.NormalizeObservation(vector_wrappers.NormalizeReward(pool))
        env.reset(seed=0)
        for a in firing(5):
            obs, rewards, *_ = env.step(a)
        assert obs.dtype == np.float32 and obs.shape == (2, *SHAPE)
        assert np.isfinite(obs).all() and np.isfinite(rewards).all()


# -- observation wrappers -------------------------------------------------------------------------


def test_grayscale_and_resize_observation():
    pytest.importorskip("cv2", reason="gymnasium's ResizeObservation needs opencv")
    with VecRetroEnv(GAME, 2, frameskip=4) as pool:
        env = vector_wrappers.ResizeObservation(
            vector_wrappers.GrayscaleObservation(pool), (84, 84)
        )
        assert env.observation_space.shape == (2, 84, 84)
        obs, _ = env.reset(seed=0)
        obs, *_ = env.step(firing(1)[0])
        assert obs.shape == (2, 84, 84) and obs.dtype == np.uint8
        assert env.observation_space.contains(obs)


def test_transform_observation_on_the_shared_view():
    with VecRetroEnv(GAME, 2, frameskip=4) as pool:
        half = gymnasium.spaces.Box(0, 255, (112, 160, 3), np.uint8)
        env = vector_wrappers.TransformObservation(
            pool, lambda obs: obs[:, ::2, ::2], single_observation_space=half
        )
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, 112, 160, 3) and env.observation_space.contains(obs)
        # A slicing transform keeps aliasing shared memory: the next step changes it.
        kept = obs.copy()
        env.step(firing(1)[0])
        assert not np.array_equal(obs, kept)


def test_in_place_observation_transform_needs_copy_true():
    # gymnasium's VectorizeTransformObservation writes the result back into the array it got
    # when the space is unchanged; the pool's observation is a read-only view, so it takes a
    # pool built with copy=True.
    def wrap(pool):
        return vector_wrappers.VectorizeTransformObservation(
            pool,
            gymnasium.wrappers.TransformObservation,
            func=lambda o: 255 - o,
            observation_space=pool.single_observation_space,
        )

    with VecRetroEnv(GAME, 1) as pool:
        with pytest.raises(ValueError, match="read-only"):
            wrap(pool).reset(seed=0)
    with VecRetroEnv(GAME, 1) as plain, VecRetroEnv(GAME, 1, copy=True) as copying:
        expected, _ = plain.reset(seed=0)
        obs, _ = wrap(copying).reset(seed=0)
        np.testing.assert_array_equal(obs, 255 - expected)


# -- infos ----------------------------------------------------------------------------------------


def test_infos_are_a_dict_of_arrays_with_masks():
    with VecRetroEnv(GAME, 3, frameskip=4, max_episode_steps=3, autoreset_mode="same_step") as env:
        _, infos = env.reset(seed=0)
        check_info_convention(infos, 3)
        assert set(infos) == {"gameover", "_gameover", "lives", "_lives", "score", "_score"}
        for _ in range(3):
            _, _, _, truncated, infos = env.step(env.action_space.sample())
        assert truncated.all()
        check_info_convention(infos, 3)
        assert infos["final_obs"].dtype == object and infos["_final_obs"].all()
        assert all(o.shape == SHAPE and o.dtype == np.uint8 for o in infos["final_obs"])
        assert infos["final_info"]["_lives"].all() and infos["final_info"]["lives"].shape == (3,)


def test_dict_info_to_list():
    with VecRetroEnv(GAME, 2, frameskip=4, max_episode_steps=2, autoreset_mode="same_step") as pool:
        env = vector_wrappers.DictInfoToList(pool)
        _, infos = env.reset(seed=0)
        assert infos == [{"gameover": 9, "lives": 3, "score": 0}] * 2
        env.step(firing(1)[0])
        _, _, _, truncated, infos = env.step(firing(2)[1])
        assert truncated.all() and len(infos) == 2
        assert infos[0]["final_obs"].shape == SHAPE
        assert infos[1]["final_info"] == {"gameover": 9, "lives": 3, "score": 0}


# -- the baselines shape --------------------------------------------------------------------------


def test_baselines_call_shape_as_the_2018_contest_agents_used_it():
    # retro-baselines' ppo2 runner: read num_envs and the spaces, then alternate step_async
    # (the emulators run) with the agent's own work, and step_wait for the results.
    with VecRetroEnv(GAME, 2, frameskip=4, sticky_prob=0.25) as env:
        assert env.num_envs == 2
        assert env.observation_space.shape == (2, *SHAPE)
        assert env.single_observation_space.shape == SHAPE
        assert env.action_space.shape == (2, 12)
        assert env.single_action_space == gymnasium.spaces.MultiBinary(12)
        obs, _ = env.reset(seed=0)
        batch = np.zeros((8, *env.observation_space.shape), np.uint8)
        for t in range(8):
            batch[t] = obs  # the runner's buffer assignment is the copy the view asks for
            env.step_async(env.action_space.sample())
            busy = float(batch[: t + 1].mean())  # work overlapped with the emulators
            obs, rewards, terminated, truncated, infos = env.step_wait(timeout=30)
            assert busy >= 0 and rewards.shape == (2,) and terminated.shape == (2,)
        assert not np.array_equal(batch[0], batch[-1])


# -- the example ----------------------------------------------------------------------------------


def test_gym_loop_example_runs():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "gym_loop.py"),
            *("--steps", "32", "--num-envs", "2", "--max-episode-steps", "10"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    # NEXT_STEP autoreset: episodes end at steps 10, 21 and 32 (each reset takes a step).
    assert "env 1: episode over after 10 steps" in out.stdout
    assert "6 episodes ended" in out.stdout and "frames/s" in out.stdout
