"""The 2018 Retro Contest without Docker: its levels and rules, evaluation, and .bk2 movies.

``fastretro.contest`` holds the rules (:mod:`.rules`, what ``EnvConfig.contest`` applies), the
levels and the preset pool (:mod:`.levels`); ``evaluate`` runs an agent under the contest's rules
and writes its results folder; ``movies`` replays and renders ``.bk2`` movies; ``render`` turns
frames into pictures.
"""

from fastretro.contest.levels import (
    Level,
    all_levels,
    contest_env,
    playable,
    rom_imported,
    spread,
    training_levels,
    validation_levels,
)
from fastretro.contest.rules import (
    FRAMESKIP,
    MAX_EPISODE_STEPS,
    SCENARIO,
    STICKY_PROB,
    has_contest_scenario,
)

__all__ = [
    "FRAMESKIP",
    "MAX_EPISODE_STEPS",
    "SCENARIO",
    "STICKY_PROB",
    "Level",
    "all_levels",
    "contest_env",
    "has_contest_scenario",
    "playable",
    "rom_imported",
    "spread",
    "training_levels",
    "validation_levels",
]
