"""Action sets: each decodes in the worker exactly as stable-retro (or retro-baselines) would."""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pytest
from conftest import GAME
from reference import plain_rollout

from fastretro import ActionError, InvalidArgumentError, VecRetroEnv
from fastretro.runtime.actions import SONIC7, SONIC10

BUTTONS = ("B", "A", "MODE", "START", "UP", "DOWN", "LEFT", "RIGHT", "C", "Y", "X", "Z")


def combo_row(combo):
    return np.array([b in combo for b in BUTTONS], np.uint8)


def run(env, actions):
    """Observations (copied: the returned ones are views of one buffer) and rewards per step."""
    env.reset(seed=0)
    observations, rewards = [], []
    for a in actions:
        obs, rew, *_ = env.step(a)
        observations.append(obs.copy())
        rewards.append(rew)
    return np.array(observations), np.array(rewards)


@pytest.mark.parametrize(("name", "combos"), [("sonic7", SONIC7), ("sonic10", SONIC10)])
def test_named_combo_sets_press_their_buttons_through_the_filter(name, combos):
    idx = np.random.default_rng(0).integers(0, len(combos), (40, 2))
    as_buttons = np.array([[combo_row(combos[i]) for i in row] for row in idx])
    with (
        VecRetroEnv(GAME, 2, actions=name, resize=(56, 80)) as discrete,
        VecRetroEnv(GAME, 2, resize=(56, 80)) as filtered,
    ):
        assert discrete.single_action_space == gymnasium.spaces.Discrete(len(combos))
        assert discrete.action_space.shape == (2,)
        obs_d, rew_d = run(discrete, idx)
        obs_f, rew_f = run(filtered, as_buttons)
    np.testing.assert_array_equal(obs_d, obs_f)
    np.testing.assert_array_equal(rew_d, rew_f)


def test_sonic10_extends_sonic7_with_noop_left_b_right_b():
    assert SONIC10[:7] == SONIC7
    assert SONIC10[7:] == ((), ("LEFT", "B"), ("RIGHT", "B"))


def test_custom_combos_as_lists_or_plus_strings():
    idx = np.random.default_rng(1).integers(0, 3, (30, 1))
    with (
        VecRetroEnv(GAME, 1, actions=[["RIGHT"], ["LEFT", "B"], []], resize=(56, 80)) as lists,
        VecRetroEnv(GAME, 1, actions=["RIGHT", "LEFT+B", ""], resize=(56, 80)) as strings,
    ):
        assert lists.single_action_space == gymnasium.spaces.Discrete(3)
        np.testing.assert_array_equal(run(lists, idx)[0], run(strings, idx)[0])


@pytest.mark.parametrize("mode", ["discrete", "multi_discrete"])
def test_stable_retro_combo_modes_match_stable_retro(mode):
    with VecRetroEnv(GAME, 1, actions=mode) as env:
        space = env.single_action_space
        acts = np.stack([space.sample() for _ in range(40)])
        if mode == "discrete":
            assert isinstance(space, gymnasium.spaces.Discrete)
            batches = acts.reshape(40, 1)
        else:
            assert isinstance(space, gymnasium.spaces.MultiDiscrete)
            batches = acts.reshape(40, 1, -1)
        obs, rew = run(env, batches)
    ref_obs, ref_rew, _ = plain_rollout(GAME, list(acts), restricted=mode)
    np.testing.assert_array_equal(obs[:, 0], ref_obs[1:])
    np.testing.assert_array_equal(rew[:, 0], ref_rew)


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (
            "sonic",
            "Expected actions to be one of ['filtered', 'discrete', 'multi_discrete', "
            "'sonic7', 'sonic10', 'ale_full', 'ale_minimal'] "
            "or a list of button combos, got 'sonic'",
        ),
        (
            [],
            "Expected actions to be one of ['filtered', 'discrete', 'multi_discrete', "
            "'sonic7', 'sonic10', 'ale_full', 'ale_minimal'] "
            "or a non-empty list of button combos, got []",
        ),
        (
            ["RIGHT", "JUMP"],
            "Unknown button 'JUMP' in actions: this console's buttons are "
            "['B', 'A', 'MODE', 'START', 'UP', 'DOWN', 'LEFT', 'RIGHT', 'C', 'Y', 'X', 'Z']",
        ),
        (
            [["RIGHT"], [1]],
            "Expected each action to be a list of button names or a '+'-joined string, got [1]",
        ),
    ],
)
def test_bad_action_sets_raise_before_any_worker_starts(actions, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        VecRetroEnv(GAME, 2, actions=actions)


def test_out_of_range_and_misshapen_discrete_actions_raise():
    with VecRetroEnv(GAME, 3, actions="sonic7", observe=False) as env:
        env.reset()
        with pytest.raises(
            ActionError,
            match=re.escape("Expected actions in [0, 7) for this action set, got 7 at env 1"),
        ):
            env.step(np.array([0, 7, 1]))
        with pytest.raises(
            ActionError,
            match=re.escape("Expected actions in [0, 7) for this action set, got -1 at env 2"),
        ):
            env.step(np.array([0, 1, -1]))
        with pytest.raises(
            ActionError, match=re.escape("Expected actions of shape (3,) (num_envs,), got (3, 1)")
        ):
            env.step(np.zeros((3, 1), int))
        with pytest.raises(
            ActionError,
            match=re.escape("Expected an integer dtype for action indices, got float64"),
        ):
            env.step(np.zeros(3))
        env.step(np.array([0, 6, 3], np.uint8))  # still usable: nothing was sent


@pytest.mark.parametrize(
    ("actions", "dtypes"),
    [
        # int64 indices and uint8/bool buttons take step's staging fast path; the others are
        # checked and converted in Python. Both must send the same buttons.
        ("sonic7", (np.int64, np.int32, np.uint8)),
        ("filtered", (np.uint8, np.bool_, np.int64)),
    ],
)
def test_every_action_dtype_drives_the_emulators_alike(actions, dtypes):
    rng = np.random.default_rng(3)
    with VecRetroEnv(GAME, 2, actions=actions) as env:
        if actions == "filtered":
            plan = rng.integers(0, 2, (40, 2, 12))
        else:
            plan = rng.integers(0, 7, (40, 2))
        runs = [run(env, plan.astype(dtype)) for dtype in dtypes]
    for obs, rewards in runs[1:]:
        np.testing.assert_array_equal(obs, runs[0][0])
        np.testing.assert_array_equal(rewards, runs[0][1])
    assert runs[0][0].std() > 0  # the frames moved: the comparison has something to compare


def test_out_of_range_multi_discrete_action_names_its_group():
    with VecRetroEnv(GAME, 2, actions="multi_discrete", observe=False) as env:
        sizes = env.single_action_space.nvec
        env.reset()
        bad = np.zeros((2, len(sizes)), int)
        bad[1, 1] = sizes[1]
        with pytest.raises(
            ActionError,
            match=re.escape(
                f"Expected actions in [0, {sizes[1]}) for this action set, got {sizes[1]} at "
                "env 1, group 1"
            ),
        ):
            env.step(bad)
