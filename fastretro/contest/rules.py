"""The 2018 Retro Contest's rules, as the fields of an :class:`~fastretro.EnvConfig`.

:meth:`fastretro.EnvConfig.contest` applies them. This module sits below the config on purpose:
it imports neither the config nor the pool (only stable-retro's game data), so that the config
can defer to it without an import circle (tests/test_imports.py keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastretro.runtime.games import has_scenario

FRAMESKIP = 4
STICKY_PROB = 0.25
MAX_EPISODE_STEPS = 4500
SCENARIO = "contest"


def has_contest_scenario(game: str) -> bool:
    """True when the game's integration ships the contest scenario (Sonic 1, 2, 3&K do)."""
    return has_scenario(game, SCENARIO)


def contest_fields(
    game: str | Sequence[str], state: str | None | Sequence[str | None], overrides: Mapping
) -> dict[str, Any]:
    """The EnvConfig fields of the contest's rules for ``game``, with ``overrides`` applied.

    The ``contest`` scenario where the game has one (others keep their default), 4 frames per
    step with sticky probability 0.25, episodes cut at 4,500 steps.
    """
    rules: dict[str, Any] = dict(
        game=game,
        state=state,
        frameskip=FRAMESKIP,
        sticky_prob=STICKY_PROB,
        max_episode_steps=MAX_EPISODE_STEPS,
    )
    # Asking stable-retro for each game's scenarios loads its data: only when it is needed.
    if "scenario" not in overrides:
        games = [game] if isinstance(game, str) else list(game)
        scenarios = [SCENARIO if has_contest_scenario(g) else None for g in games]
        rules["scenario"] = scenarios[0] if isinstance(game, str) else tuple(scenarios)
    return {**rules, **overrides}
