"""fastretro's ids in gymnasium's registry: ``gymnasium.make_vec("fastretro/Breakout-v5", 8)``.

Each id names a game and a protocol, and ``make_vec`` returns a :class:`~fastretro.VecRetroEnv`
built with it (keyword options are EnvConfig/PoolConfig fields and change it):

=================================  ===========================================================
``fastretro/Breakout-v5``          EnvPool's ``Breakout-v5`` defaults: no sticky actions,
                                   up to 30 no-op frames and FIRE at reset, 4 frames a step
                                   (max of the last two), 84x84 gray, stack of 4, minimal
                                   action set, raw rewards, 27,000 steps
``fastretro/ALE-Breakout-v5``      ``gymnasium.make_vec("ALE/Breakout-v5")`` (ale-py's
                                   ``AtariVectorEnv``): the same, with sticky actions 0.25
                                   and rewards clipped to their sign
``fastretro/BreakoutNoFrameskip-   ``BreakoutNoFrameskip-v4`` under SB3's ``AtariWrapper``
v4``                               (the DQN protocol) and a stack of 4: EnvPool's defaults
                                   with a lost life ending the episode and signed rewards
``fastretro/Breakout-Atari2600-    a stable-retro game ID: ``VecRetroEnv``'s defaults
v0``, ``fastretro/Airstriker-...``
=================================  ===========================================================

gymnasium (>= 1.0) loads no plugins, so ids are registered when fastretro is imported; to keep
``import fastretro`` free of gymnasium's import, :func:`install` registers them at once when
gymnasium's registry is already loaded, and otherwise when it is first imported. This module
imports nothing heavy at the top: the pool is built in :func:`make_vec_env`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any

NAMESPACE = "fastretro"
ENTRY_POINT = "fastretro.integrations.gym_registry:single_env"
VECTOR_ENTRY_POINT = "fastretro.integrations.gym_registry:make_vec_env"
#: Each protocol as EnvPool options over EnvPool's Atari defaults (``envpool_compat``).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "envpool": {},
    # ale-py's registration of ALE/*-v5 (sticky 0.25, frameskip 4, minimal set, 108,000
    # frames) and its AtariVectorEnv's defaults (84x84 gray, stack 4, max-pool, noop_max 30,
    # FIRE reset, reward_clipping=True, no episodic life).
    "ale": {"repeat_action_probability": 0.25, "reward_clip": True},
    # *NoFrameskip-v4 (no sticky actions) under SB3's AtariWrapper: noop_max 30, 4 frames a
    # step with max-pooling, terminal_on_life_loss, FIRE reset, clip_reward (sign), 84x84 gray.
    "sb3": {"episodic_life": True, "reward_clip": True},
}
#: EnvConfig fields a protocol sets beyond EnvPool's options: under SB3's AtariWrapper, whole
#: games' scores in infos["episode"], as RecordEpisodeStatistics (or SB3's Monitor) below the
#: wrappers of a per-env make_env gives them.
NATIVE: dict[str, dict[str, Any]] = {"sb3": {"episode_statistics": True}}
#: stable-retro's game ID shipped with it.
SHIPPED_GAME = "Airstriker-Genesis-v0"


def make_vec_env(num_envs: int = 1, *, game: str, protocol: str, **options: Any):
    """The ids' vector entry point: a :class:`~fastretro.VecRetroEnv` of ``game``.

    Built under ``protocol`` (``"envpool"``, ``"ale"``, ``"sb3"`` or ``"retro"``) and changed
    by ``options`` (EnvConfig/PoolConfig fields).
    """
    from fastretro.config import EnvConfig, split_options
    from fastretro.runtime.pool import VecRetroEnv

    if protocol == "retro":
        return VecRetroEnv(game, num_envs, **options)
    from fastretro.integrations import envpool_compat as compat

    env_changes, pool_options = split_options(options)
    task = compat.Task(game, game, game, atari=True)
    envpool_options = {**compat.ATARI_DEFAULTS, **PROTOCOLS[protocol]}
    config_options = compat.env_options(task, envpool_options)
    native = NATIVE.get(protocol, {})
    config = EnvConfig(**{**config_options, **native, **env_changes})
    return VecRetroEnv(config, num_envs, **pool_options)


def single_env(**kwargs: Any):
    """The ids' single-env entry point: it raises, as fastretro's ids are vector envs only."""
    from fastretro.errors import InvalidArgumentError

    raise InvalidArgumentError(
        "fastretro's ids make a pool of envs: use gymnasium.make_vec(id, num_envs=N, "
        "vectorization_mode='vector_entry_point'), not gymnasium.make"
    )


def ids() -> dict[str, dict[str, str]]:
    """Every id this module registers, with its ``kwargs`` (``game``, ``protocol``)."""
    out: dict[str, dict[str, str]] = {}
    atari = _atari_games()
    for game, rom in atari.items():
        name = "".join(part.capitalize() for part in rom.split("_"))
        out[f"{NAMESPACE}/{name}-v5"] = {"game": game, "protocol": "envpool"}
        out[f"{NAMESPACE}/ALE-{name}-v5"] = {"game": game, "protocol": "ale"}
        out[f"{NAMESPACE}/{name}NoFrameskip-v4"] = {"game": game, "protocol": "sb3"}
    for game in sorted({SHIPPED_GAME, *atari, *_games_with_rom()}):
        out[f"{NAMESPACE}/{game}"] = {"game": game, "protocol": "retro"}
    return out


def register_all() -> None:
    """Register :func:`ids` in gymnasium's registry (idempotent)."""
    from gymnasium.envs.registration import register, registry

    for env_id, kwargs in ids().items():
        if env_id not in registry:
            register(
                id=env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                kwargs=kwargs,
            )


def install() -> None:
    """Register now if gymnasium's registry is loaded, else as soon as it is imported."""
    if "gymnasium.envs.registration" in sys.modules:
        _register_quietly()
    elif not any(isinstance(f, _RegisterOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterOnImport())


def _register_quietly() -> None:
    # A broken registration must not break gymnasium's import (or fastretro's).
    import warnings

    try:
        register_all()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        warnings.warn(f"fastretro could not register its gymnasium ids: {exc!r}", stacklevel=2)


class _RegisterOnImport(importlib.abc.MetaPathFinder):
    """Finds ``gymnasium.envs.registration`` as usual, and registers once it has run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None):
        if fullname != "gymnasium.envs.registration":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenRegister(spec.loader)
        return spec


class _ThenRegister(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _register_quietly()


def _atari_games() -> dict[str, str]:
    # fastretro/data/atari.json, read directly: the ALE backend's module imports numba.
    import json

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "atari.json")
    with open(path) as f:
        return {game: entry["rom"] for game, entry in json.load(f)["games"].items()}


def _games_with_rom() -> list[str]:
    """stable-retro's games whose ROM is imported, found on disk without importing it."""
    import json

    spec = importlib.util.find_spec("stable_retro")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = list(spec.submodule_search_locations)[0]
    extensions: dict[str, list[str]] = {}
    cores = os.path.join(root, "cores")
    for name in os.listdir(cores) if os.path.isdir(cores) else ():
        if name.endswith(".json"):
            with open(os.path.join(cores, name)) as f:
                for system, core in json.load(f).items():
                    extensions[system] = core.get("ext", [])
    found = []
    for kind in ("stable", "experimental", "contrib"):
        folder = os.path.join(root, "data", kind)
        for game in os.listdir(folder) if os.path.isdir(folder) else ():
            system = game.removesuffix("-v0").rsplit("-", 1)[-1]
            for ext in extensions.get(system, ()):
                if os.path.exists(os.path.join(folder, game, f"rom.{ext}")):
                    found.append(game)
                    break
    return found
