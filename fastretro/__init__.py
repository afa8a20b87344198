"""fastretro: vectorized classic-console emulation for reinforcement learning."""

from __future__ import annotations

__version__ = "0.1.0"

from fastretro.errors import (  # noqa: E402
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

DEFAULT_GAME = "Airstriker-Genesis-v0"

__all__ = [
    "DEFAULT_GAME",
    "ActionError",
    "ClosedError",
    "FastRetroError",
    "GameNotFoundError",
    "InvalidArgumentError",
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
    "contest_env",
]


def __getattr__(name: str):
    # VecRetroEnv pulls in the compiled handshake; import it lazily so `import fastretro`
    # (and fastretro.kernels) stays cheap in worker processes and in tools that need no pool.
    if name == "VecRetroEnv":
        from fastretro.pool import VecRetroEnv

        return VecRetroEnv
    if name == "Snapshot":
        from fastretro.pool import Snapshot

        return Snapshot
    if name == "SB3VecEnv":
        from fastretro.sb3 import SB3VecEnv

        return SB3VecEnv
    if name == "contest_env":
        from fastretro.contest import contest_env

        return contest_env
    raise AttributeError(f"module 'fastretro' has no attribute {name!r}")
