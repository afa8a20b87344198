"""Emulator backends: what runs a game behind the seam of :mod:`.base`.

``stable-retro`` (:mod:`.retro`) runs every system stable-retro integrates, one emulator per
process.
"""

from __future__ import annotations

from fastretro.runtime.backends.base import Emulator

#: backend name -> how many of its emulators one process may hold (None: any number)
PER_PROCESS = {"stable-retro": 1}


def make_emulator(backend: str, setup, config, env: int) -> Emulator:
    """Create env ``env``'s emulator in this (worker) process.

    Args:
        backend: a name of :data:`PER_PROCESS`.
        setup: the env's :class:`~fastretro.runtime.games.GameSetup`.
        config: the pool's :class:`~fastretro.config.EnvConfig`.
        env: the env's index (for its movie folder).
    """
    if backend == "stable-retro":
        from fastretro.runtime.backends.retro import RetroEmulator

        return RetroEmulator(
            setup, config.record_dir(env), config.skip_rendering, config.skip_audio
        )
    raise ValueError(f"unknown emulator backend {backend!r}")


__all__ = ["PER_PROCESS", "Emulator", "make_emulator"]
