"""Sequences: many agent steps per round trip, for agents that decide a stretch of actions.

``step_sequences``/``send_sequences`` write each env's actions into its row of the shared
``seq_actions`` array; its worker runs them one agent step each, exactly as ``step`` would, and
stops at the step that ends the episode (ext/worker_loop.pyx ``run_sequence``). This module
checks what goes in and shapes what comes out; :class:`SequenceRows` is the pool's side of it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastretro.errors import ActionError, InvalidArgumentError
from fastretro.runtime.protocol import ActionMode, Command


def check_sequences(
    actions: Any, lengths: Any, rows: int, sequence_length: int, mode: int, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``rows`` sequences: ``(actions as (rows, L, width) int64, lengths)``.

    Args:
        actions: ``(rows, L, ...)``, each step shaped as one row of ``step``'s actions.
        lengths: one length per row, each in ``[1, sequence_length]``.
        rows: sequences expected.
        sequence_length: the pool's longest sequence.
        mode: the action table's :class:`~fastretro.runtime.protocol.ActionMode`.
        high: the choices per action column.
    """
    k = sequence_length
    if not k:
        raise InvalidArgumentError(
            "Sequences need VecRetroEnv(..., sequence_length=K, observe=False): this pool "
            "was made with sequence_length=0"
        )
    lens = np.asarray(lengths)
    if lens.shape != (rows,) or lens.dtype.kind not in "iu":
        raise InvalidArgumentError(
            f"Expected lengths to be {rows} ints (one per env), got {lens.dtype} array of "
            f"shape {lens.shape}"
        )
    out_of_range = (lens < 1) | (lens > k)
    if out_of_range.any():
        j = int(np.argmax(out_of_range))
        raise InvalidArgumentError(
            f"Expected sequence lengths in [1, {k}] (sequence_length), got {lens[j]} at row {j}"
        )
    arr = np.asarray(actions)
    width = len(high)
    row = () if mode == ActionMode.INDEX else (width,)
    longest = int(lens.max())
    if (
        arr.ndim != 2 + len(row)
        or arr.shape[0] != rows
        or arr.shape[2:] != row
        or (arr.shape[1] < longest)
    ):
        shape = ", ".join(["rows", "L", *(["width"] if row else [])])
        raise ActionError(
            f"Expected sequence actions of shape ({shape}) = ({rows}, L >= {longest}"
            f"{', ' + str(width) if row else ''}), got {arr.shape}"
        )
    if arr.dtype.kind not in ("biu" if mode == ActionMode.BITS else "iu"):
        raise ActionError(f"Expected integer sequence actions, got {arr.dtype}")
    flat = arr[:, :longest].reshape(rows, longest, width).astype(np.int64, copy=False)
    limit_of = 2 if mode == ActionMode.BITS else high
    used = (np.arange(longest) < lens[:, None])[..., None]
    bad = used & ((flat < 0) | (flat >= limit_of))
    if bad.any():
        r, t, col = np.argwhere(bad)[0]
        limit = limit_of if np.ndim(limit_of) == 0 else limit_of[col]
        raise ActionError(
            f"Expected sequence actions in [0, {limit}) for this action set, got "
            f"{flat[r, t, col]} at row {r}, step {t}" + (f", column {col}" if width > 1 else "")
        )
    return flat, lens.astype(np.int64)


def step_rewards(seq_rewards: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Each sequence's per-step rewards (a copy), 0 past the steps it ran.

    Only the steps run hold this sequence's rewards; the rest are an older sequence's.
    """
    out = seq_rewards.copy()
    out[np.arange(out.shape[1]) >= np.asarray(steps)[:, None]] = 0.0
    return out


def sequence_infos(a: dict, ids: np.ndarray, rewards: np.ndarray) -> dict[str, np.ndarray]:
    """The sequence entries of an async batch's infos; clears the envs' ``seq_len``.

    ``seq_len`` holds what ``send_sequences`` gave each env and is cleared here, so 0 marks an
    env that ran a plain step: it reports a sequence of one.
    """
    seq_len = a["seq_len"]
    ran = seq_len[ids] > 0
    steps = np.where(ran, a["seq_steps"][ids], 1)
    per_step = step_rewards(a["seq_rewards"][ids], steps)
    per_step[~ran, 0] = rewards[~ran]
    seq_len[ids] = 0
    return {
        "sequence_steps": steps,
        "_sequence_steps": ran,
        "sequence_rewards": per_step,
        "_sequence_rewards": ran.copy(),
    }


class SequenceRows:
    """The pool's sequence rows of shared memory: sequences staged in, their infos read out.

    Args:
        arrays: the pool's shared arrays (``seq_actions``, ``seq_len``, ``seq_steps``,
            ``seq_rewards``, and ``cmd`` for the commands).
        sequence_length: the pool's longest sequence (0: the pool takes none).
        mode: the action table's :class:`~fastretro.runtime.protocol.ActionMode`.
        high: the choices per action column.
    """

    def __init__(self, arrays: dict, sequence_length: int, mode: int, high: np.ndarray) -> None:
        self.a = arrays
        self.sequence_length, self.mode, self.high = sequence_length, mode, high

    def stage(self, actions: Any, lengths: Any, ids: np.ndarray | None) -> int:
        """Check the sequences of the envs ``ids`` (None: all), write them and their commands.

        Returns:
            The longest sequence's length (the caller's wait allows a step's time for each).
        """
        a, rows = self.a, slice(None) if ids is None else ids
        count = len(a["seq_len"]) if ids is None else len(ids)
        flat, lens = check_sequences(
            actions, lengths, count, self.sequence_length, self.mode, self.high
        )
        a["seq_actions"][rows, : flat.shape[1]] = flat
        a["seq_len"][rows] = lens
        a["cmd"][rows] = Command.SEQUENCE
        return int(lens.max())

    def infos(self) -> dict[str, np.ndarray]:
        """The sequence entries of a lock-step ``step_sequences``'s infos (every env ran one)."""
        a = self.a
        everyone = np.ones(len(a["seq_len"]), dtype=bool)
        return {
            "sequence_steps": a["seq_steps"].copy(),
            "_sequence_steps": everyone,
            "sequence_rewards": step_rewards(a["seq_rewards"], a["seq_steps"]),
            "_sequence_rewards": everyone.copy(),
        }

    def batch_infos(self, ids: np.ndarray, rewards: np.ndarray) -> dict[str, np.ndarray]:
        """The sequence entries of an async batch's infos (see :func:`sequence_infos`)."""
        return sequence_infos(self.a, ids, rewards)
