"""gym's, ALE's and EnvPool's Atari ids name stable-retro's games wherever a game is taken."""

import re

import pytest

from fastretro import GameNotFoundError, VecRetroEnv
from fastretro.runtime.games import atari_game, resolve


@pytest.mark.parametrize(
    "name",
    ["ALE/Breakout-v5", "Breakout-v5", "BreakoutNoFrameskip-v4", "BreakoutDeterministic-v4"],
)
def test_gym_ale_and_envpool_ids_name_the_atari_game(name):
    assert atari_game(name) == "Breakout-Atari2600-v0"
    assert resolve(name).game == "Breakout-Atari2600-v0"


def test_the_pool_takes_an_envpool_id():
    with VecRetroEnv("Pong-v5", 1, observe=False) as env:
        assert env.setups[0].game == "Pong-Atari2600-v0"


def test_an_unknown_id_still_says_what_is_wrong():
    with pytest.raises(GameNotFoundError, match=re.escape("Unknown game 'Nope-v5'")):
        resolve("Nope-v5")
