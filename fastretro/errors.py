"""One exception module: every error fastretro raises on purpose derives from FastRetroError."""

from __future__ import annotations


class FastRetroError(Exception):
    """Base class of every error fastretro raises on purpose."""


class InvalidArgumentError(FastRetroError, ValueError):
    """A constructor or call argument is out of range, of the wrong type or of the wrong shape."""


class GameNotFoundError(InvalidArgumentError):
    """The game is not integrated in stable-retro, or its ROM has not been imported."""


class StateNotFoundError(InvalidArgumentError):
    """The save state named for a game does not exist."""


class ScenarioNotFoundError(InvalidArgumentError):
    """The scenario (reward/done definition) named for a game does not exist."""


class ActionError(InvalidArgumentError):
    """An action batch has the wrong shape, dtype or values."""


class MovieError(InvalidArgumentError):
    """A ``.bk2`` movie is over a size limit, or holds an unusable start state or input line."""


class MovieTimeoutError(FastRetroError, TimeoutError):
    """A replay or render ran past its timeout; its process was killed."""


class StateMachineError(FastRetroError, RuntimeError):
    """A call came out of order: ``step_wait`` without ``step_async``, ``step`` after ``close``."""


class ClosedError(StateMachineError):
    """The pool has been closed."""


class WorkerError(FastRetroError, RuntimeError):
    """A worker process failed. ``index`` names the worker (and so the env)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class WorkerDiedError(WorkerError):
    """A worker process died (killed by a signal, or exited) while the parent waited for it."""


class WorkerTimeoutError(WorkerError, TimeoutError):
    """A worker did not answer within the timeout."""


class RemoteTraceback(Exception):
    """Carries a worker's formatted traceback as the ``__cause__`` of a re-raised exception."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb}"""'


class ShardConnectionError(FastRetroError, ConnectionError):
    """The driver could not connect to a Ray shard's direct connection, or authenticate it."""
