"""Emulator backends: what runs a game behind the seam of :mod:`.base`.

- ``stable-retro`` (:mod:`.retro`): every system stable-retro integrates, one emulator per
  process; on Genesis it skips the pictures and the FM sound nobody uses.
- ``ale`` (:mod:`.ale`): the Atari 2600 games whose ROM ale-py ships, on ALE's emulator (about
  3.6 times faster than stable-retro's Stella core on the same ROM), several per process, with
  stable-retro's buttons (:mod:`.ale_games`), RAM variables (:mod:`.ale_ram`) and scenarios.
- ``libretro`` (:mod:`.libretro`): stable-retro's Genesis core on fastretro's own libretro
  frontend, a private copy of the core per emulator, so several per process; Mega Drive games
  only, without Lua scenarios (:func:`.libretro.refusal` says why not).

:mod:`.ale_games` also holds the Atari data both backends use without ALE running (its game
table and action sets).
"""

from __future__ import annotations

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.backends.base import Emulator

#: backend name -> how many of its emulators one process may hold (None: any number)
PER_PROCESS = {"stable-retro": 1, "ale": None, "libretro": None}


def choose_backend(config, setups) -> tuple[str, str]:
    """The backend that runs a pool's envs, and why.

    ``config.backend="auto"`` takes ALE where it runs every env with the same meaning, else
    libretro where it runs them all (Mega Drive games: a worker then holds several, 0.23x
    gymnasium's memory per env at 256 envs, bench/bench_size.py), else stable-retro; a backend
    named explicitly must be able to run them.

    Raises:
        InvalidArgumentError: ``backend="ale"`` or ``"libretro"`` for envs that backend cannot
            run (the reason says why), or ``"stable-retro"`` for a game whose ROM stable-retro
            lacks.
    """
    from fastretro.runtime.games import ATARI_HINT, IMPORT_HINT, ale_runs

    if config.backend == "libretro":
        from fastretro.runtime.backends.libretro import refusal

        why = refusal(config, setups)
        if why is not None:
            raise InvalidArgumentError(f"Cannot run on the libretro backend: {why}")
        return "libretro", "backend='libretro'"

    if config.backend == "stable-retro":
        missing = sorted({s.game for s in setups if not s.rom_imported})
        if missing:
            raise InvalidArgumentError(
                f"The ROM of {missing[0]} is not imported into stable-retro: {IMPORT_HINT} "
                f"(or run it on ALE: backend='ale'; {ATARI_HINT})"
            )
        return "stable-retro", "backend='stable-retro'"
    reasons = []
    games = sorted({s.game for s in setups})
    not_ale = [g for g in games if not ale_runs(g)]
    if not_ale:
        reasons.append(
            f"ALE does not run {not_ale[0]}"
            + ("" if not_ale[0].endswith("-Atari2600-v0") else " (not an Atari 2600 game)")
        )
    if config.record is not None:
        reasons.append("the pool records .bk2 movies, which replay on stable-retro's core")
    if any(s.state is not None for s in setups):
        reasons.append("a save state is named (ALE starts every episode from its own reset)")
    unplanned = [s for s in setups if s.scenario_plan is None]
    if config.scenario_engine == "stable-retro" or unplanned:
        why = unplanned[0].scenario_plan_why_not if unplanned else "scenario_engine=stable-retro"
        reasons.append(f"the scenario needs stable-retro's own engine ({why})")
    if not reasons:
        return "ale", "ALE runs every env's game"
    if config.backend == "ale":
        raise InvalidArgumentError(f"Cannot run on ALE: {reasons[0]}")
    from fastretro.runtime.backends.libretro import refusal

    why_not_libretro = refusal(config, setups)
    if why_not_libretro is None:
        return "libretro", "the libretro backend runs every env's game (Genesis)"
    return "stable-retro", f"{why_not_libretro}; {reasons[0]}"


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
    if backend == "ale":
        from fastretro.runtime.backends.ale import AleEmulator

        return AleEmulator(setup.game)
    if backend == "libretro":
        from fastretro.runtime.backends.libretro import LibretroEmulator

        return LibretroEmulator(
            setup, config.record_dir(env), config.skip_rendering, config.skip_audio
        )
    raise ValueError(f"unknown emulator backend {backend!r}")


__all__ = ["PER_PROCESS", "Emulator", "choose_backend", "make_emulator"]
