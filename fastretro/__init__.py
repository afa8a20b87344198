"""fastretro: vectorized classic-console emulation for reinforcement learning."""

from __future__ import annotations

__version__ = "0.2.0"

from fastretro import _moved
from fastretro.errors import (
    ActionError,
    ClosedError,
    FastRetroError,
    GameNotFoundError,
    InvalidArgumentError,
    ScenarioNotFoundError,
    StateMachineError,
    StateNotFoundError,
    WorkerDiedError,
    WorkerError,
    WorkerTimeoutError,
)
from fastretro.integrations import gym_registry as _gym_registry

_moved.install()
# fastretro's ids in gymnasium's registry (fastretro/integrations/gym_registry.py), registered
# without importing gymnasium: now if it is loaded, else when it is.
_gym_registry.install()

# Public names whose modules import the compiled handshake, numba or stable-retro's data: loaded
# on first use, so that `import fastretro` stays cheap in worker processes and in tools that
# need no pool.
_LAZY = {
    # The config's, where EnvConfig.game's default is declared: the config imports nothing
    # from this module, so that it stays the bottom of the package (tests/test_imports.py).
    "DEFAULT_GAME": "fastretro.config",
    "VecRetroEnv": "fastretro.runtime.pool",
    "Snapshot": "fastretro.runtime.snapshots",
    "EnvConfig": "fastretro.config",
    "PoolConfig": "fastretro.config",
    "SB3VecEnv": "fastretro.integrations.sb3",
    "contest_env": "fastretro.contest.levels",
    "atari_env": "fastretro.atari",
}

__all__ = [
    "DEFAULT_GAME",
    "ActionError",
    "ClosedError",
    "EnvConfig",
    "FastRetroError",
    "GameNotFoundError",
    "InvalidArgumentError",
    "PoolConfig",
    "SB3VecEnv",
    "ScenarioNotFoundError",
    "Snapshot",
    "StateMachineError",
    "StateNotFoundError",
    "VecRetroEnv",
    "WorkerDiedError",
    "WorkerError",
    "WorkerTimeoutError",
    "__version__",
    "atari_env",
    "contest_env",
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastretro' has no attribute {name!r}")
