"""The words the parent and its workers exchange, defined once for Python and the compiled loop.

The compiled modules (ext/worker_loop.pyx, ext/handshake.pyx) read every code below from this
module when they are imported, so the two sides of the shared memory cannot disagree;
``tests/runtime/test_protocol.py`` checks that each compiled module acts on these values.

Per env, the parent writes a :class:`Command` into the shared ``cmd`` word and wakes the
workers; the worker that owns the env runs it, clears the word, and reports completion (the
handshake's ``done``). Startup crosses a pipe once: each worker sends a :class:`WorkerReady`
per env, then attaches the shared segment.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from gymnasium.vector import AutoresetMode


class Command(enum.IntEnum):
    """What the parent asks of one env (its ``cmd`` word); 0 means nothing."""

    STEP = 1
    RESET = 2
    CLOSE = 3
    RESTORE = 4
    SEQUENCE = 5


#: A reset's ``arg`` when it starts the env's next episode (a masked reset: gymnasium's way of
#: starting the next episode with autoreset DISABLED, and SB3VecEnv's): after a lost life under
#: ``episodic_life`` the game goes on. Any other reset (a seed >= 0, or -1) starts a new game.
RESET_NEXT_EPISODE = -2


class Autoreset(enum.IntEnum):
    """When an ended episode restarts (gymnasium's ``AutoresetMode``)."""

    NEXT_STEP = 0
    SAME_STEP = 1
    DISABLED = 2

    @classmethod
    def of(cls, mode: AutoresetMode) -> Autoreset:
        """The code of a gymnasium mode."""
        return cls[mode.name]


class ActionMode(enum.IntEnum):
    """How a row of actions decodes into buttons (fastretro/runtime/actions.py)."""

    BITS = 0  # one 0/1 per button
    INDEX = 1  # one index into a table of button masks
    GROUPS = 2  # one index per group of combos, OR-ed


class Status(enum.IntEnum):
    """A worker's ``status`` word, read by the parent after a batch."""

    OK = 0
    ERROR = 1


class Timing(enum.IntEnum):
    """Columns of a worker's row of the shared ``timing`` array (int64)."""

    EMULATE = 0  # ns in the emulator (frames; the movie's frame too when recording)
    RAM = 1  # ns reading variables and evaluating reward and done
    OBS = 2  # ns grabbing the screen and preprocessing it into shared memory
    RESET = 3  # ns starting episodes, first observation included
    WAIT = 4  # ns blocked, waiting for the parent's next command
    STEPS = 5  # agent steps
    FRAMES = 6  # emulator frames
    RESETS = 7  # episodes started
    WAKE = 8  # ns from the parent's wake-up call to the worker running this env's command
    WAKEUPS = 9  # commands run (the wake-ups WAKE sums over)


#: Used columns of a timing row; the row stride is wider so that no two workers share a line.
TIMING_WIDTH = len(Timing)
#: 16 int64 = two cache lines per row: workers on different cores write their rows every step.
TIMING_STRIDE = 16
#: Bytes of the parent's semaphore (a cache line of its own).
SEM_STRIDE = 64


def segment_fields(
    num_envs: int,
    obs_buffer: tuple[int, ...],
    final_obs: tuple[int, ...],
    action_width: int,
    info_width: int,
    state_size: int,
    snap_screen: tuple[int, ...],
    sequence_length: int,
) -> list[tuple[str, tuple[int, ...], str]]:
    """The arrays of a pool's shared segment: (name, shape, dtype), one row per env.

    Args:
        num_envs: envs of the pool.
        obs_buffer: one env's observation ring (``Preprocessing.buffer_shape``), or ``(0,)``.
        final_obs: one env's final observation (SAME_STEP autoreset), or ``(0,)``.
        action_width: columns of a row of actions.
        info_width: RAM variables reported in infos.
        state_size: bytes of a save state (snapshots), or 0.
        snap_screen: a snapshot's screen, or ``(0,)``.
        sequence_length: the longest action sequence, or 0.
    """
    n = num_envs
    return [
        ("obs", (n, *obs_buffer), "u1"),
        ("final_obs", (n, *final_obs), "u1"),
        ("slot", (n,), "i4"),
        ("actions", (n, action_width), "i8"),
        ("rewards", (n,), "f8"),
        ("raw_rewards", (n,), "f8"),
        ("lives", (n,), "i8"),
        ("game_over", (n,), "u1"),
        ("final_lives", (n,), "i8"),
        ("final_game_over", (n,), "u1"),
        ("terminated", (n,), "u1"),
        ("truncated", (n,), "u1"),
        ("info", (n, info_width), "i8"),
        ("final_info", (n, info_width), "i8"),
        ("queue", (n,), "i4"),
        ("cmd", (n,), "i4"),
        ("arg", (n,), "i8"),
        ("status", (n,), "i4"),
        ("counter", (48,), "i4"),
        ("timing", (n, TIMING_STRIDE), "i8"),
        ("snap", (n, state_size), "u1"),
        ("snap_len", (n,), "i8"),
        ("snap_step", (n,), "i8"),
        ("snap_return", (n,), "f8"),
        ("snap_screen", (n, *snap_screen), "u1"),
        ("seq_actions", (n, sequence_length, action_width), "i8"),
        ("seq_len", (n,), "i8"),
        ("seq_rewards", (n, sequence_length), "f8"),
        ("seq_steps", (n,), "i8"),
        ("sem", (SEM_STRIDE,), "u1"),
    ]


class WorkerReady(NamedTuple):
    """What a worker reports about one of its envs before attaching the shared memory."""

    screen_shape: tuple[int, ...]
    """The observed screen (after the integration's crop and rotation), (H, W, 3)."""
    action_mode: int
    """The :class:`ActionMode` of the env's action table."""
    action_sizes: tuple[int, ...]
    """Choices per action column."""
    state_size: int
    """Bytes of a save state (sizes the snapshot slots); 0 without ``snapshot_best``."""
    raw_screen: tuple[int, ...]
    """The emulator's whole screen, as snapshots keep it."""
    skips_rendering: bool
    """Frames no observation uses run without drawing."""
    skips_audio: bool
    """The FM chip runs without its sound."""
    backend: str
    """The emulator backend's name."""
    observes_from: str
    """The emulator's picture observations are made from: ``"screen"`` (RGB),
    ``"screen_gray"`` (its own gray) or ``"screen_codes"`` (colour codes looked up in its
    palette as they are resized); ``""`` without observations."""
