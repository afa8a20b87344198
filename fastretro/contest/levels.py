"""The Retro Contest (2018): its Sonic levels as data, and a preset pool under its rules.

The contest's environment (``fastretro/contest/rules.py``): the ``contest`` scenario (reward =
x-progress through the level, from the Lua script in stable-retro's Sonic integrations), 4 frames
per step with sticky probability 0.25, and episodes cut at 4,500 steps. Its levels: 47 training
and 11 validation (game, state) pairs of Sonic 1, 2 and 3 & Knuckles
(``fastretro/contest/data/sonic-levels.csv``). The ROMs are not shipped; import yours with
``python -m stable_retro.import DIR``.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.games import rom_imported


@dataclass(frozen=True)
class Level:
    """One contest level: a game and the save state it starts from."""

    game: str
    state: str
    split: str = "custom"


@lru_cache(maxsize=1)
def all_levels() -> tuple[Level, ...]:
    """The contest's 58 levels, training then validation, in the CSV's order."""
    text = resources.files("fastretro.contest").joinpath("data/sonic-levels.csv").read_text()
    return tuple(
        Level(r["game"], r["state"], r["split"]) for r in csv.DictReader(text.splitlines())
    )


def training_levels() -> list[Level]:
    """The 47 training levels."""
    return [lv for lv in all_levels() if lv.split == "train"]


def validation_levels() -> list[Level]:
    """The 11 validation levels (the contest kept its 11 test levels hidden)."""
    return [lv for lv in all_levels() if lv.split == "validation"]


def playable(levels: Iterable[Level]) -> list[Level]:
    """The levels whose ROM is imported."""
    return [lv for lv in levels if rom_imported(lv.game)]


def spread(
    levels: Sequence[Level | tuple[str, str | None]], num_envs: int, seed: int | None = None
) -> tuple[list[str], list[str | None]]:
    """Assign levels to ``num_envs`` envs for joint training: per-env games and states.

    Levels go round-robin (env ``i`` gets level ``i mod len(levels)``), so every level gets
    ``num_envs // len(levels)`` or one more env; with ``seed``, the order is shuffled first
    (use it when there are fewer envs than levels, to sample which levels run).
    """
    levels = [_level(lv) for lv in levels]
    if not levels:
        raise InvalidArgumentError("Expected at least one level, got an empty list")
    order = np.arange(len(levels))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(levels))
    chosen = [levels[order[i % len(levels)]] for i in range(num_envs)]
    return [lv.game for lv in chosen], [lv.state for lv in chosen]


def contest_env(num_envs: int, levels=None, *, allow_backtracking: bool = False, **options):
    """A :class:`~fastretro.VecRetroEnv` under the contest's rules, set up as its baselines were.

    Rules (:meth:`~fastretro.EnvConfig.contest`): scenario ``contest`` (where the game has one;
    others keep their default scenario), ``frameskip=4``, ``sticky_prob=0.25``,
    ``max_episode_steps=4500``. Agent-side setup, as
    retro-baselines' ``sonic_util.make_env``: ``actions="sonic7"``, 84x84 gray frames stacked 4
    deep. Every default can be overridden with ``options`` (e.g. ``actions="filtered",
    grayscale=False, resize=None, frame_stack=1`` gives the raw contest interface).

    Args:
        num_envs: number of emulators.
        levels: :class:`Level` objects, ``(game, state)`` pairs or game IDs, spread over the
            envs with :func:`spread`; default: the 47 training levels.
        allow_backtracking: reward only new maximum x (retro-baselines' AllowBacktracking).
        **options: any other :class:`~fastretro.VecRetroEnv` option.

    Raises:
        GameNotFoundError: a level's ROM is not imported (the message says how to import it).
    """
    from fastretro.config import EnvConfig, split_options
    from fastretro.runtime.pool import VecRetroEnv

    games, states = spread(training_levels() if levels is None else levels, num_envs)
    env_options, pool_options = split_options(options)
    baselines = dict(actions="sonic7", grayscale=True, resize=(84, 84), frame_stack=4)
    config = EnvConfig.contest(
        games, states, allow_backtracking=allow_backtracking, **{**baselines, **env_options}
    )
    return VecRetroEnv(config, num_envs, **pool_options)


def _level(lv) -> Level:
    if isinstance(lv, Level):
        return lv
    if isinstance(lv, str):
        return Level(lv, None)
    if isinstance(lv, (tuple, list)) and len(lv) == 2:
        return Level(lv[0], lv[1])
    raise InvalidArgumentError(
        f"Expected a level to be a Level, a (game, state) pair or a game ID, got {lv!r}"
    )
