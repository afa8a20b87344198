"""Atari 2600, the field's standard benchmark: Machado et al. (2018)'s protocol as a preset.

``atari_env("Pong", 16)`` is a :class:`~fastretro.VecRetroEnv` under the standard protocol
(:meth:`fastretro.EnvConfig.atari`, whose fields and EnvPool's and the DQN protocol's are in
:mod:`fastretro.atari.protocols`), running on ALE's emulator when ale-py is installed
(``pip install "fastretro[atari]"``) with stable-retro's buttons, RAM variables and scenarios.
``fastretro roms --from-ale`` also imports ale-py's ROMs into stable-retro, for its own core.
"""

from __future__ import annotations

from typing import Any


def atari_env(game: str, num_envs: int, **overrides: Any):
    """A pool of ``num_envs`` envs of ``game`` under the standard protocol.

    Args:
        game: ``"Pong"``, ``"pong"`` or ``"Pong-Atari2600-v0"``.
        num_envs: number of emulators.
        **overrides: any :class:`~fastretro.EnvConfig` field (changes the protocol) or
            :class:`~fastretro.PoolConfig` field (``batch_size``, ``autoreset_mode``, ...).
    """
    from fastretro.config import EnvConfig, split_options
    from fastretro.runtime.pool import VecRetroEnv

    env_options, pool_options = split_options(overrides)
    return VecRetroEnv(EnvConfig.atari(game, **env_options), num_envs, **pool_options)
