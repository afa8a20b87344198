"""The published Atari 2600 protocols, as the fields of an :class:`~fastretro.EnvConfig`.

:meth:`fastretro.EnvConfig.atari`, ``envpool_atari`` and ``dqn_atari`` apply them. This module
sits below the config on purpose: it imports neither the config nor the pool (only stable-retro's
game names), so that the config can defer to it without an import circle
(tests/test_imports.py keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastretro.runtime.games import atari_game

#: Machado et al. (2018): sticky actions with probability 0.25, 4 frames per step, the max of
#: the step's last two frames, 84x84 gray, a stack of 4 (channels first, as EnvPool and ALE's
#: vector env give them), ALE's full 18-action set, no end of episode on a lost life, episodes
#: capped at 108,000 frames (27,000 steps).
MACHADO: dict[str, Any] = dict(
    frameskip=4,
    sticky_prob=0.25,
    max_pool=True,
    grayscale=True,
    resize=(84, 84),
    frame_stack=4,
    channels_first=True,
    actions="ale_full",
    max_episode_steps=27_000,
)
#: EnvPool's ``-v5`` defaults (``AtariEnvFns.DefaultConfig``): Machado's, with ALE's minimal
#: action set, no sticky actions, and 1..30 no-op frames and a FIRE frame at each reset.
ENVPOOL_V5: dict[str, Any] = {
    **MACHADO,
    **dict(sticky_prob=0.0, actions="ale_minimal", noop_max=30, fire_reset=True),
}
#: ``NoFrameskip-v4`` under SB3's ``AtariWrapper`` (Mnih et al. 2015): EnvPool's, with a lost
#: life ending the training episode, rewards clipped to their sign, and 100,000-step episodes
#: (``NoFrameskip-v4``'s 400,000 frames).
DQN: dict[str, Any] = {
    **ENVPOOL_V5,
    **dict(episodic_life=True, sign_reward=True, max_episode_steps=100_000),
}


def protocol_fields(
    protocol: Mapping[str, Any], game: str | Sequence[str], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The EnvConfig fields of ``protocol`` for ``game``, with ``overrides`` applied.

    Args:
        protocol: :data:`MACHADO`, :data:`ENVPOOL_V5` or :data:`DQN`.
        game: a stable-retro Atari 2600 game ID, its short name (``"Pong"``) or ALE's ROM
            name (``"pong"``), or one per env.
        overrides: any other field (a change of protocol).

    Raises:
        GameNotFoundError: no Atari 2600 integration of that name.
    """
    games = atari_game(game) if isinstance(game, str) else tuple(map(atari_game, game))
    return {"game": games, **protocol, **overrides}
