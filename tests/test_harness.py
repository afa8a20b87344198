"""The agents' harness: episodes, checkpoint schedule, compatibility, config checks, the CLI."""

from __future__ import annotations

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
