"""The contest's levels as data, spreading them over envs, and the contest_env preset."""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pytest
from conftest import GAME

import fastretro
from fastretro import GameNotFoundError, InvalidArgumentError, contest
from fastretro.contest import Level, contest_env, spread, training_levels, validation_levels

SONIC = "SonicTheHedgehog-Genesis-v0"


def test_level_lists_hold_47_training_and_11_validation_levels_of_three_games():
    train, valid = training_levels(), validation_levels()
    assert len(train) == 47 and len(valid) == 11
    assert not {(lv.game, lv.state) for lv in train} & {(lv.game, lv.state) for lv in valid}
    assert {lv.game for lv in train + valid} == {
        "SonicTheHedgehog-Genesis-v0",
        "SonicTheHedgehog2-Genesis-v0",
        "SonicAndKnuckles3-Genesis-v0",
    }
    assert Level(SONIC, "GreenHillZone.Act1", "train") in train


def test_every_level_state_and_contest_scenario_ships_with_stable_retro():
    import stable_retro.data as data

    inttype = data.Integrations.ALL
    for lv in contest.all_levels():
        assert lv.state in data.list_states(lv.game, inttype), lv
        assert data.get_file_path(lv.game, "contest.json", inttype), lv


def test_spread_goes_round_robin_and_shuffles_with_a_seed():
    levels = [("A-v0", "s1"), ("B-v0", "s2"), ("C-v0", "s3")]
    games, states = spread(levels, 7)
    assert games == ["A-v0", "B-v0", "C-v0"] * 2 + ["A-v0"]
    assert states == ["s1", "s2", "s3"] * 2 + ["s1"]
    shuffled, _ = spread(training_levels(), 8, seed=1)
    assert len(set(shuffled)) >= 2 and shuffled == spread(training_levels(), 8, seed=1)[0]
    counts = np.unique(spread(levels, 100)[0], return_counts=True)[1]
    assert counts.max() - counts.min() <= 1


def test_spread_rejects_bad_levels():
    with pytest.raises(InvalidArgumentError, match="Expected at least one level, got an empty"):
        spread([], 4)
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape("Expected a level to be a Level, a (game, state) pair or a game ID, got 3"),
    ):
        spread([3], 4)


def test_contest_env_applies_the_rules_and_baselines_setup():
    # Airstriker has no contest scenario: it keeps its default one; the rules still apply.
    with fastretro.contest_env(2, [GAME]) as env:
        assert env.frameskip == 4 and env.sticky_prob == 0.25
        assert env.max_episode_steps == 4500
        assert env.single_action_space == gymnasium.spaces.Discrete(7)
        assert env.single_observation_space.shape == (84, 84, 4)
        env.reset(seed=0)
        obs, *_ = env.step(np.array([1, 6]))
        assert obs.shape == (2, 84, 84, 4)


def test_contest_env_options_override_the_defaults():
    with contest_env(
        1,
        [GAME],
        actions="filtered",
        grayscale=False,
        resize=None,
        frame_stack=1,
        max_episode_steps=10,
    ) as env:
        assert env.single_action_space == gymnasium.spaces.MultiBinary(12)
        assert env.single_observation_space.shape == (224, 320, 3)
        assert env.max_episode_steps == 10


@pytest.mark.skipif(contest.rom_imported(SONIC), reason="the Sonic ROM is imported here")
def test_contest_env_without_the_sonic_rom_says_how_to_import_it():
    with pytest.raises(GameNotFoundError, match=re.escape("python -m stable_retro.import DIR")):
        contest_env(2)


@pytest.mark.skipif(
    not contest.rom_imported(SONIC),
    reason="needs the Sonic ROM (not shipped): import it with `python -m stable_retro.import DIR`",
)
def test_contest_env_on_sonic_rewards_x_progress():
    with contest_env(2, [(SONIC, "GreenHillZone.Act1")], actions="sonic7") as env:
        env.reset(seed=0)
        total = np.zeros(2)
        for _ in range(100):
            _, rew, *_ = env.step(np.full(2, 1))  # RIGHT
            total += rew
        assert (total > 0).all()
