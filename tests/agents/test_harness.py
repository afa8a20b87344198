"""The agents' harness: episodes, checkpoint schedule, compatibility, config checks, the CLI."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

import numpy as np
import pytest
from gymnasium.spaces import Discrete, MultiDiscrete

from fastretro.agents import harness
from fastretro.errors import InvalidArgumentError


class _Log:
    def __init__(self) -> None:
        self.rows: list[tuple] = []

    def episode(self, reward: float, length: int, frames: int) -> None:
        self.rows.append((reward, length, frames))


def test_episodes_book_each_env_and_end_episodes_in_env_order():
    log = _Log()
    eps = harness.Episodes(4, log)
    eps.add(slice(2, 4), np.array([1.0, 2.0]), np.array([False, True]), 8)
    eps.add(np.array([0, 2]), np.array([5.0, 3.0]), np.array([True, True]), 16)
    assert log.rows == [(2.0, 1, 8), (5.0, 1, 16), (4.0, 2, 16)]
    assert eps.count == 3 and eps.mean100() == pytest.approx(11 / 3)
    assert list(eps.reward) == [0.0, 0.0, 0.0, 0.0]
    assert harness.Episodes(1, log).mean100(None) is None


def test_checkpoint_schedule_saves_every_so_often_and_last(tmp_path):
    saved = []
    ckpts = harness.CheckpointSchedule(str(tmp_path), 100, 50, lambda p, f: saved.append((p, f)))
    for frames in (100, 150, 200, 249):
        ckpts.maybe(frames)
    folder = os.path.join(str(tmp_path), "checkpoints")
    assert saved == [(os.path.join(folder, "ckpt_150.pt"), 150)]
    assert ckpts.final(249) == os.path.join(folder, "last.pt")
    never = harness.CheckpointSchedule(str(tmp_path), 0, 0, lambda p, f: saved.append(p))
    never.maybe(10**9)
    assert len(saved) == 2


def test_a_checkpoint_of_other_actions_is_refused_naming_them():
    harness.check_compatible("c.pt", 7, 7, "sonic7", "sonic7")
    harness.check_compatible("c.pt", 2, 2, [("B", "UP"), "LEFT"], [["B", "UP"], "LEFT"])
    with pytest.raises(InvalidArgumentError, match=re.escape("'c.pt' was trained with 7 actions")):
        harness.check_compatible("c.pt", 7, 10)
    with pytest.raises(InvalidArgumentError, match="the action set 'sonic7'; this run uses"):
        harness.check_compatible("c.pt", 7, 7, "sonic7", "discrete")


def test_actions_are_counted_for_one_env_or_a_pool():
    assert harness.n_actions_of(Discrete(9)) == 9
    assert harness.n_actions_of(MultiDiscrete([9, 9, 9])) == 9


@dataclass
class _Config:
    """A config for the tests."""

    steps: int = 4
    """Steps."""
    rate: float = 0.5
    """A rate in [0, 1]."""
    fast: bool = False
    """Go fast."""
    name: str = "x"
    """A name."""

    def check(self) -> None:
        harness.check_fields(self, ints=("steps",), unit=("rate",))


def test_check_fields_names_the_field_and_its_range():
    _Config().check()
    with pytest.raises(InvalidArgumentError, match=re.escape("Expected steps to be an int >= 1")):
        _Config(steps=True).check()
    with pytest.raises(InvalidArgumentError, match=re.escape("Expected rate in [0, 1], got 2")):
        _Config(rate=2).check()


def test_the_command_has_a_flag_per_field_and_flags_override_the_preset(capsys):
    presets = {"quick": {"steps": 1, "rate": 0.25}}
    parser = harness.config_parser("prog", "desc", _Config, presets, "runs/x", skip=("name",))
    args = parser.parse_args(["--preset", "quick", "--rate", "0.75", "--fast"])
    assert harness.config_values(args, _Config, presets, ("name",)) == {
        "steps": 1,
        "rate": 0.75,
        "fast": True,
    }
    assert args.run_dir == "runs/x" and args.resume is None
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    out = capsys.readouterr().out
    assert "A rate in [0, 1]." in out and "--no-fast" in out and "--name" not in out


def test_a_config_from_a_checkpoint_drops_fields_it_no_longer_has():
    assert harness.config_from(_Config, {"steps": 3, "gone": 1}) == _Config(steps=3)


def test_config_flags_go_on_an_argument_group_and_only_given_ones_count():
    parser = argparse.ArgumentParser()
    group = parser.add_argument_group("settings")
    harness.config_flags(group, _Config, types={"name": str.upper})
    args = parser.parse_args(["--steps", "3", "--no-fast", "--name", "abc"])
    assert harness.flag_values(args, _Config) == {"steps": 3, "fast": False, "name": "ABC"}
    assert harness.flag_values(args, _Config, skip=("name",)) == {"steps": 3, "fast": False}
    assert "A rate in [0, 1]." in parser.format_help()


def test_a_strict_config_refuses_names_it_does_not_have():
    assert harness.config_from(_Config, {"steps": 2}, strict="Test") == _Config(steps=2)
    msg = "Unknown Test settings: ['stesp'] (did you mean 'steps'?)"
    with pytest.raises(InvalidArgumentError, match=re.escape(msg)):
        harness.config_from(_Config, {"stesp": 2}, strict="Test")


def test_a_continuous_action_space_is_refused():
    from gymnasium.spaces import Box

    with pytest.raises(InvalidArgumentError, match="Expected a discrete action space"):
        harness.n_actions_of(Box(-1, 1, (2,)))


class _Pool:
    """Env i's episodes last i + 1 steps; each step rewards 1."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.t = np.zeros(num_envs, np.int64)

    def reset(self, seed=None):
        self.t[:] = 0
        return np.zeros((self.num_envs, 1)), {}

    def step(self, actions):
        assert len(actions) == self.num_envs
        self.t += 1
        done = self.t == np.arange(1, self.num_envs + 1)
        self.t[done] = 0
        obs = np.zeros((self.num_envs, 1))
        return obs, np.ones(self.num_envs), done, np.zeros(self.num_envs, bool), {}


class _Memory:
    """An agent with ``observe``: counts the episodes it was told ended."""

    def __init__(self) -> None:
        self.ended = 0

    def act(self, obs):
        return np.zeros(len(obs), np.int64)

    def observe(self, rewards, terminated, truncated) -> None:
        self.ended += int(np.sum(terminated | truncated))


def test_play_episodes_spreads_them_over_the_envs_in_env_order():
    def choose(obs):
        return np.zeros(len(obs), np.int64)

    assert harness.play_episodes(_Pool(1), choose, 3, 0) == [1.0, 1.0, 1.0]
    # 5 episodes on 2 envs: env 0 counts 3 (1 step each), env 1 counts 2 (2 steps each); env 0's
    # 4th episode, ended before env 1's 2nd, is not counted (short episodes are not favoured).
    memory = _Memory()
    assert harness.play_episodes(_Pool(2), memory, 5, 0) == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert memory.ended == 6


def test_an_eval_agent_observes_where_its_policy_does():
    factory = harness.eval_factory(lambda o, a: _Memory(), {"resize": (64, 64)})
    agent = factory(None, None)
    assert factory.env_options == {"resize": (64, 64)}
    assert list(agent.act(np.zeros((2, 1)))) == [0, 0]
    agent.observe(np.zeros(2), np.array([True, True]), np.array([False, False]))
    assert agent.choose.__self__.ended == 2
    assert not hasattr(harness.eval_factory(lambda o, a: len, {})(None, None), "observe")
