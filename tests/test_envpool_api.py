"""fastretro.envpool: EnvPool's task ids, options, defaults, spaces, infos and calls."""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pytest

import fastretro.envpool as envpool
from fastretro.config import ENV_FIELDS
from fastretro.errors import GameNotFoundError, InvalidArgumentError, StateMachineError
from fastretro.integrations import envpool_compat as compat

pytest.importorskip("ale_py", reason='ale-py is the atari extra: pip install "fastretro[atari]"')

#: The DQN-era EnvConfig fields EnvPool's defaults need (noop_max, fire_reset, ...): the tests
#: marked with it run once they are in fastretro/config.py.
needs_protocol = pytest.mark.skipif(
    not set(compat.PROTOCOL_FIELDS) <= set(ENV_FIELDS),
    reason="needs EnvConfig's noop_max, fire_reset, episodic_life and sign_reward",
)
#: Options that ask nothing of those fields: the pool runs them today.
PLAIN = {"noop_max": 0, "use_fire_reset": False}
INFO_KEYS = {"env_id", "players", "lives", "reward", "terminated", "elapsed_step"}
#: envpool/atari/atari_env.h's DefaultConfig and the registration's max_episode_steps.
ENVPOOL_ATARI = {
    "stack_num": 4,
    "frame_skip": 4,
    "noop_max": 30,
    "zero_discount_on_life_loss": False,
    "episodic_life": False,
    "reward_clip": False,
    "use_fire_reset": True,
    "img_height": 84,
    "img_width": 84,
    "mode": -1,
    "difficulty": -1,
    "full_action_space": False,
    "repeat_action_probability": 0.0,
    "use_inter_area_resize": True,
    "gray_scale": True,
    "max_episode_steps": 27000,
    "num_envs": 1,
    "batch_size": 0,
    "seed": 42,
}


def test_task_ids_are_envpools_atari_ids_and_stable_retro_game_ids():
    ids = envpool.list_all_envs()
    assert {"Pong-v5", "Breakout-v5", "UpNDown-v5", "Airstriker-Genesis-v0"} <= set(ids)
    assert len([i for i in ids if i.endswith("-v5")]) == 32
    task = compat.resolve_task("UpNDown-v5")
    assert (task.game, task.task, task.atari) == (
        "UpNDown-Atari2600-v0",
        "up_n_down",
        True,
    )
    assert compat.resolve_task("Airstriker-Genesis-v0").atari is False


def test_an_unknown_task_id_is_named_with_the_closest():
    with pytest.raises(GameNotFoundError, match=re.escape("Pomg-v5 is not supported")) as info:
        envpool.make_spec("Pomg-v5")
    assert "Did you mean Pong-v5" in str(info.value)


def test_the_spec_has_envpools_defaults_and_one_envs_spaces():
    spec = envpool.make_spec("Pong-v5")
    assert {k: getattr(spec.config, k) for k in ENVPOOL_ATARI} == ENVPOOL_ATARI
    assert spec.config.task == "pong"
    assert spec.observation_space == gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert spec.action_space == gymnasium.spaces.Discrete(6)  # Pong's minimal set
    assert envpool.make_spec("Pong-v5", full_action_space=True).action_space.n == 18
    rgb = envpool.make_spec("Pong-v5", gray_scale=False, stack_num=2, img_height=64)
    assert rgb.observation_space.shape == (6, 64, 84)


def test_envpools_options_become_the_pools_config():
    task = compat.resolve_task("Breakout-v5")
    config = {**task.defaults, "frame_skip": 1, "stack_num": 2, "img_width": 42,
              "gray_scale": False, "full_action_space": True, "max_episode_steps": 100,
              "repeat_action_probability": 0.25, **PLAIN}  # fmt: skip
    options = compat.env_options(task, config)
    assert options["game"] == "Breakout-Atari2600-v0"
    assert (options["frameskip"], options["max_pool"], options["frame_stack"]) == (1, False, 2)
    assert (options["resize"], options["grayscale"], options["channels_first"]) == (
        (84, 42),
        False,
        True,
    )
    assert (options["actions"], options["max_episode_steps"]) == ("ale_full", 100)
    assert options["sticky_prob"] == 0.25  # ALE's per-frame draw, kept on the step's first frame
    assert compat.env_options(task, task.defaults)["actions"] == "ale_minimal"


def test_seeds_follow_envpools_rule():
    config = {**compat.COMMON_DEFAULTS, "num_envs": 3}
    assert compat.first_seeds(config) == 42  # env i gets 42 + i, in EnvPool and the pool
    assert compat.first_seeds({**config, "seed": [5, 6, 7]}) == [5, 6, 7]
    assert compat.first_seeds({**config, "env_seed": [1, 2, 3]}) == [1, 2, 3]
    with pytest.raises(InvalidArgumentError, match=re.escape("Expected seed to be an int >= 0")):
        compat.first_seeds({**config, "seed": -1})


def test_an_unknown_option_is_named_with_the_closest():
    message = "Unknown option 'stak_num' for Pong-v5; did you mean 'stack_num'?"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        envpool.make("Pong-v5", stak_num=4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env_type": "dm"}, "env_type='dm' is not supported"),
        ({"mode": 1}, "mode=1 is not supported"),
        ({"difficulty": 0}, "difficulty=0 is not supported"),
        ({"use_inter_area_resize": False}, "use_inter_area_resize=False is not supported"),
        ({"max_num_players": 2}, "max_num_players=2 is not supported"),
        ({"gym_reset_return_info": False}, "gym_reset_return_info=False is not supported"),
        ({"render_mode": "rgb_array"}, "render_mode='rgb_array' is not supported"),
        ({"task": "breakout"}, "task='breakout' is not supported"),
        ({"batch_size": 3}, "Expected 0 <= batch_size <= num_envs=1, got 3"),
    ],
)
def test_what_fastretro_cannot_honour_raises_naming_the_option(options, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        envpool.make("Pong-v5", **options)


def test_full_action_space_of_a_stable_retro_game_raises():
    message = "full_action_space=True is not supported for Airstriker-Genesis-v0"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        envpool.make("Airstriker-Genesis-v0", full_action_space=True)


@pytest.mark.parametrize("env_type", ["gymnasium", "gym"])
def test_reset_and_step_return_envpools_shapes_dtypes_and_info_keys(env_type):
    envs = envpool.make("Breakout-v5", env_type=env_type, num_envs=2, **PLAIN)
    try:
        assert isinstance(envs, gymnasium.vector.VectorEnv) and isinstance(envs, gymnasium.Env)
        assert envs.observation_space == gymnasium.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        assert envs.action_space == envs.single_action_space == gymnasium.spaces.Discrete(4)
        assert (envs.num_envs, len(envs), envs.is_async) == (2, 2, False)
        assert envs.config["num_envs"] == 2 and envs.spec.config.task == "breakout"
        envs.num_envs = 2  # CleanRL sets these
        obs, info = envs.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert set(info) == INFO_KEYS
        assert info["env_id"].tolist() == info["players"]["env_id"].tolist() == [0, 1]
        assert info["elapsed_step"].tolist() == [0, 0]
        assert info["lives"].tolist() == [5, 5]  # Breakout's lives, from its data.json
        for _ in range(3):
            obs, rew, term, trunc, info = envs.step(np.array([1, 3], np.int32))
        assert obs.shape == (2, 4, 84, 84) and obs.flags.writeable  # a new array, not a view
        assert (rew.dtype, term.dtype, trunc.dtype) == (np.float32, np.bool_, np.bool_)
        assert set(info) == INFO_KEYS and info["elapsed_step"].tolist() == [3, 3]
        assert {v.dtype for k, v in info.items() if k != "players"} == {
            np.dtype(np.int32),
            np.dtype(np.float32),
        }
        np.testing.assert_array_equal(info["reward"], rew)  # no reward_clip: the raw reward
        with pytest.raises(InvalidArgumentError, match=re.escape("xla() is not supported")):
            envs.xla()
    finally:
        envs.close()


def test_lock_step_send_recv_and_env_ids():
    envs = envpool.make("Pong-v5", num_envs=2, **PLAIN)
    try:
        envs.async_reset()
        obs, rew, term, trunc, info = envs.recv()  # reset's results, as a step's 5-tuple
        assert obs.shape == (2, 4, 84, 84) and rew.tolist() == [0, 0]
        assert info["elapsed_step"].tolist() == [0, 0]
        with pytest.raises(StateMachineError, match=re.escape("Cannot call recv without")):
            envs.recv()
        envs.send(np.array([2, 3]), np.array([1, 0]))  # env 1 takes 2, env 0 takes 3
        obs, *_, info = envs.recv()
        assert info["env_id"].tolist() == [0, 1] and info["elapsed_step"].tolist() == [1, 1]
        message = "Expected env_id to name every env once in lock-step mode"
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            envs.step(np.array([0]), np.array([1]))
        obs, info = envs.reset(np.array([1]))  # one env's reset: its row only
        assert obs.shape == (1, 4, 84, 84) and info["env_id"].tolist() == [1]
        *_, info = envs.step({"action": np.zeros(2, np.int64)})
        assert info["elapsed_step"].tolist() == [2, 1]
    finally:
        envs.close()


def test_async_recv_returns_batch_size_envs_with_their_ids():
    envs = envpool.make("Pong-v5", num_envs=3, batch_size=2, **PLAIN)
    try:
        assert envs.is_async
        envs.async_reset()
        seen: list[int] = []  # each env's results so far: its elapsed_step is their count
        for _ in range(4):
            obs, rew, term, trunc, info = envs.recv()
            assert obs.shape == (2, 4, 84, 84) and rew.shape == (2,) and set(info) == INFO_KEYS
            ids = info["env_id"].tolist()
            assert len(set(ids)) == 2 and set(ids) <= {0, 1, 2}
            assert info["elapsed_step"].tolist() == [seen.count(i) for i in ids]
            seen += ids
            envs.send(np.zeros(2, np.int32), info["env_id"])
        envs.recv()
    finally:
        envs.close()


@needs_protocol
def test_envpools_defaults_run_with_the_protocol_fields():
    envs = envpool.make("Breakout-v5", num_envs=2, seed=3)
    try:
        config = envs.pool.config
        assert (config.noop_max, config.fire_reset, config.episodic_life, config.sign_reward) == (
            30,
            True,
            False,
            False,
        )
        obs, info = envs.reset()
        assert obs.shape == (2, 4, 84, 84) and info["elapsed_step"].tolist() == [0, 0]
    finally:
        envs.close()


@needs_protocol
def test_a_lost_life_ends_the_episode_but_not_the_game_under_episodic_life():
    envs = envpool.make("Breakout-v5", num_envs=2, episodic_life=True, reward_clip=True)
    rng = np.random.default_rng(0)
    try:
        envs.reset()
        for _ in range(2000):
            obs, rew, term, trunc, info = envs.step(rng.integers(0, 4, 2))
            np.testing.assert_array_equal(rew, np.sign(info["reward"]))
            lost = term & (info["terminated"] == 0)
            if lost.any():
                break
        assert lost.any(), "no life lost in 2,000 random steps"
        i = int(np.flatnonzero(lost)[0])
        elapsed = info["elapsed_step"][i]
        *_, info = envs.step(np.zeros(2, np.int32))
        assert info["elapsed_step"][i] == elapsed  # the continuation: the game's count goes on
        assert info["lives"][i] >= 1
    finally:
        envs.close()
