"""EnvConfig and PoolConfig on their own: normalising, checking, replacing and splitting options."""

from __future__ import annotations

import re

import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from fastretro.config import (
    DEFAULT_GAME,
    ENV_FIELDS,
    POOL_FIELDS,
    EnvConfig,
    PoolConfig,
    from_arguments,
    parse_combo,
    split_options,
)
from fastretro.errors import InvalidArgumentError


def test_lists_become_tuples_and_numbers_their_types():
    config = EnvConfig(game=["A-v0", "B-v0"], frameskip=np.int64(4), sticky_prob=0, noop_max=3)
    assert config.game == ("A-v0", "B-v0")
    assert type(config.frameskip) is int and config.frameskip == 4
    assert type(config.sticky_prob) is float
    assert config.per_env("game", 2) == ["A-v0", "B-v0"]
    assert EnvConfig().per_env("game", 3) == [DEFAULT_GAME] * 3


def test_actions_take_a_set_name_or_combos_in_either_form():
    config = EnvConfig(actions=[["LEFT"], "RIGHT+B", ""])
    assert config.actions == (("LEFT",), ("RIGHT", "B"), ())
    assert parse_combo("UP++A") == ("UP", "A")


def test_record_paths_become_absolute_and_each_env_gets_its_folder(tmp_path):
    config = EnvConfig(record=str(tmp_path))
    assert config.record_dir(3) == str(tmp_path / "env003")
    assert EnvConfig().record_dir(0) is None
    per_env = EnvConfig(record=["a", "b"])
    assert per_env.record_dir(1).endswith("/b") and per_env.record[1].startswith("/")


def test_replace_checks_again_and_as_options_round_trips():
    config = EnvConfig(frameskip=2)
    assert config.replace(frameskip=3).frameskip == 3
    with pytest.raises(InvalidArgumentError, match=re.escape("Expected frameskip >= 1, got 0")):
        config.replace(frameskip=0)
    assert EnvConfig(**config.as_options()) == config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"frameskip": 1.5}, "Expected frameskip to be an int, got float"),
        ({"frameskip": True}, "Expected frameskip to be an int, got bool"),
        ({"sticky_prob": 1.5}, "Expected sticky_prob to be a float in [0, 1], got 1.5"),
        ({"sticky_prob": True}, "Expected sticky_prob to be a float in [0, 1], got True"),
        ({"max_pool": True, "frameskip": 1}, "expected frameskip >= 2, got 1"),
        ({"reward_scale": float("nan")}, "Expected reward_scale to be a finite number, got nan"),
        ({"clip_reward": 0}, "Expected clip_reward to be None or a number > 0, got 0"),
        ({"noop_max": -1}, "Expected noop_max >= 0, got -1"),
        (
            {"backend": "mame"},
            "Expected backend to be one of ['auto', 'stable-retro', 'ale', 'libretro']",
        ),
        ({"scenario_engine": "lua"}, "Expected scenario_engine to be 'auto' or 'stable-retro'"),
        ({"sequence_length": 4}, "sequence_length=4 needs observe=False"),
        ({"actions": "all"}, "Expected actions to be one of ['filtered', 'discrete'"),
        ({"actions": []}, "or a non-empty list of button combos, got []"),
        ({"actions": [[1, 2]]}, "Expected each action to be a list of button names"),
        ({"record": 3}, "Expected record to be a folder path, a list of num_envs folder paths"),
        ({"max_episode_steps": 0}, "Expected max_episode_steps >= 1, got 0"),
    ],
)
def test_bad_env_fields_raise_naming_the_field(changes, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        EnvConfig(**changes)


def test_per_env_list_of_the_wrong_length_raises():
    message = "Expected game to be one value or a list of num_envs=3 values, got a list of 2"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        EnvConfig(game=["A-v0", "B-v0"]).per_env("game", 3)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_envs": 0}, "Expected num_envs >= 1, got 0"),
        ({"num_envs": 2, "batch_size": 3}, "Expected batch_size <= num_envs=2, got 3"),
        (
            {"num_envs": 2, "batch_size": 1, "autoreset_mode": "disabled"},
            "Expected autoreset_mode NEXT_STEP or SAME_STEP with batch_size",
        ),
        ({"autoreset_mode": "sometimes"}, "Expected autoreset_mode to be one of ['NEXT_STEP'"),
        ({"step_timeout": 0}, "Expected step_timeout > 0 seconds, got 0"),
        ({"startup_timeout": "1"}, "Expected startup_timeout > 0 seconds, got '1'"),
        ({"seed": -1}, "Expected seed >= 0, got -1"),
        ({"on_worker_failure": "retry"}, "Expected on_worker_failure to be 'raise' or 'restart'"),
        ({"start_method": "thread"}, "Expected start_method to be one of"),
        ({"envs_per_worker": 0}, "Expected envs_per_worker >= 1, got 0"),
        ({"workers": "fibres"}, "Expected workers to be 'processes' or 'threads', got 'fibres'"),
        (
            {"workers": "threads", "on_worker_failure": "restart"},
            "Expected on_worker_failure='raise' with workers='threads', got 'restart': a "
            "thread cannot be killed",
        ),
        (
            {"workers": "threads", "start_method": "spawn"},
            "Expected start_method=None with workers='threads' (they start no process), "
            "got 'spawn'",
        ),
    ],
)
def test_bad_pool_fields_raise_naming_the_field(changes, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        PoolConfig(**changes)


def test_autoreset_mode_takes_gymnasiums_names_and_values():
    assert PoolConfig(autoreset_mode="same_step").autoreset_mode == AutoresetMode.SAME_STEP
    assert PoolConfig(autoreset_mode="NextStep").autoreset_mode == AutoresetMode.NEXT_STEP
    assert PoolConfig(autoreset_mode="Disabled").autoreset_mode == AutoresetMode.DISABLED


def test_workers_share_out_the_envs():
    pool = PoolConfig(num_envs=7, envs_per_worker=3)
    assert pool.num_workers == 3
    assert [list(pool.worker_envs(w)) for w in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert PoolConfig(num_envs=4).num_workers == 4


def test_split_options_sorts_names_and_suggests_the_closest():
    env, pool = split_options({"frameskip": 2, "num_envs": 3})
    assert env == {"frameskip": 2} and pool == {"num_envs": 3}
    assert set(ENV_FIELDS).isdisjoint(POOL_FIELDS)
    message = (
        "Unknown option 'frame_skip' for VecRetroEnv; did you mean 'frameskip' or 'frame_stack'?"
    )
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        split_options({"frame_skip": 4})
    with pytest.raises(InvalidArgumentError, match=re.escape("Unknown option 'x' for PoolConfig")):
        PoolConfig().replace(x=1)


def test_from_arguments_layers_arguments_over_the_configs():
    base = EnvConfig(frameskip=2)
    env, pool = from_arguments("G-v0", 3, None, None, base, None, {"sticky_prob": 0.5})
    assert (env.game, env.frameskip, env.sticky_prob) == ("G-v0", 2, 0.5)
    assert pool.num_envs == 3
    env, pool = from_arguments(base, None, None, None, None, PoolConfig(num_envs=5), {})
    assert env is base and pool.num_envs == 5
    with pytest.raises(InvalidArgumentError, match="Pass the EnvConfig as game or as config="):
        from_arguments(base, 1, None, None, base, None, {})
    with pytest.raises(InvalidArgumentError, match="Expected config to be a fastretro.EnvConfig"):
        from_arguments("G-v0", 1, None, None, {"frameskip": 2}, None, {})
    with pytest.raises(InvalidArgumentError, match="Expected pool to be a fastretro.PoolConfig"):
        from_arguments("G-v0", 1, None, None, None, {"num_envs": 2}, {})
