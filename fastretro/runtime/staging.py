"""Actions on their way to the workers: checked once in the parent, written into shared memory.

The common cases (int64 indices for the discrete sets, uint8 or bool buttons, int64 env ids)
are checked and written in one C loop (``fastretro.runtime._ext.handshake.BatchIO``); anything
else takes the Python checks, which convert what they can and otherwise raise
:class:`~fastretro.errors.ActionError` saying what was expected and what arrived.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fastretro.errors import ActionError, InvalidArgumentError, StateMachineError
from fastretro.runtime.protocol import ActionMode, Command


class ActionStaging:
    """The action checks and the staging fast paths of one pool.

    Args:
        num_envs: envs of the pool.
        buttons: the console's button names.
        action_mode: the :class:`~fastretro.runtime.protocol.ActionMode` of the action table.
        action_sizes: the choices per action column.
        io: the pool's ``BatchIO`` over the shared arrays.
        rows_name: what one row of actions stands for in messages (``"num_envs"`` in
            lock-step, ``"len(env_ids)"`` in async mode).
    """

    def __init__(
        self, num_envs: int, buttons, action_mode: int, action_sizes, io, rows_name: str
    ) -> None:
        self.num_envs = num_envs
        self.buttons = tuple(buttons)
        self.mode = ActionMode(action_mode)
        self.sizes = tuple(action_sizes)
        self.high = np.asarray(self.sizes)
        # One index per env (the discrete action sets) takes the fast path.
        one_index = self.mode == ActionMode.INDEX and len(self.sizes) == 1
        self.index_high = int(self.sizes[0]) if one_index else None
        self.io = io
        self.rows_name = rows_name

    @property
    def width(self) -> int:
        """Columns of a row of actions in shared memory."""
        return len(self.sizes)

    # -- fast paths -------------------------------------------------------------------------

    def stage_all(self, actions: Any, slot: int) -> bool:
        """Lock-step: stage every env's action, ring slot and STEP in one C loop.

        Returns False where the fast path does not apply or a value is out of range; the caller
        then runs :meth:`check`, which converts or raises.
        """
        arr = self.fast_form(actions, self.num_envs)
        if arr is None:
            return False
        buttons, indices = (None, arr) if self.index_high is not None else (arr, None)
        return self.io.stage(buttons, indices, self.index_high or 0, slot, Command.STEP) < 0

    def send_rows(self, actions: Any, env_ids: Any, slots, depth: int, in_flight_u8) -> bool:
        """Async ``send``: stage int64 ``env_ids``' actions, slots and STEP in one C loop.

        Returns False where the fast path does not apply (the caller's checks then say what is
        wrong: a repeated id, one in flight, a value out of range...).
        """
        if type(env_ids) is not np.ndarray or env_ids.dtype != np.int64 or env_ids.ndim != 1:
            return False
        arr = self.fast_form(actions, len(env_ids))
        if arr is None:
            return False
        buttons, indices = (None, arr) if self.index_high is not None else (arr, None)
        return self.io.send_rows(
            env_ids,
            buttons,
            indices,
            self.index_high or 0,
            slots,
            depth,
            in_flight_u8,
            Command.STEP,
        )

    def fast_form(self, actions: Any, rows: int) -> np.ndarray | None:
        """``actions`` as the fast paths take them, or None where they do not."""
        if type(actions) is not np.ndarray:
            return None
        if self.index_high is not None:
            ok = actions.dtype == np.int64 and actions.shape == (rows,)
            return actions if ok else None
        if self.mode != ActionMode.BITS:
            return None
        if actions.dtype == np.bool_:
            actions = actions.view(np.uint8)
        elif actions.dtype != np.uint8:
            return None
        return actions if actions.shape == (rows, len(self.buttons)) else None

    # -- checks -----------------------------------------------------------------------------

    def check(self, actions: Any, n: int) -> np.ndarray:
        """Validate ``n`` rows of actions; shape them as the shared array's rows."""
        arr = np.asarray(actions)
        if self.mode == ActionMode.BITS:
            return self._check_buttons(arr, n)
        if self.mode == ActionMode.INDEX:
            expected, what = (n,), f"({self.rows_name},)"
        else:
            expected, what = (n, self.width), f"({self.rows_name}, groups)"
        if arr.shape != expected:
            raise ActionError(f"Expected actions of shape {expected} {what}, got {arr.shape}")
        if arr.dtype.kind not in "iu":
            raise ActionError(f"Expected an integer dtype for action indices, got {arr.dtype}")
        arr = arr.reshape(n, -1)
        bad = (arr < 0) | (arr >= self.high)
        if bad.any():
            env, col = np.argwhere(bad)[0]
            where = f"env {env}" if arr.shape[1] == 1 else f"env {env}, group {col}"
            raise ActionError(
                f"Expected actions in [0, {self.high[col]}) for this action set, got "
                f"{arr[env, col]} at {where}"
            )
        return arr

    def _check_buttons(self, arr: np.ndarray, n: int) -> np.ndarray:
        expected = (n, len(self.buttons))
        if arr.shape != expected:
            raise ActionError(
                f"Expected actions of shape {expected} ({self.rows_name}, buttons), got {arr.shape}"
            )
        if arr.dtype.kind not in "biu":
            raise ActionError(
                f"Expected an integer or bool dtype for button actions (0 or 1), got {arr.dtype}"
            )
        if arr.dtype.kind != "b" and (arr.max() > 1 or arr.min() < 0):
            bad = np.argwhere((arr < 0) | (arr > 1))[0]
            raise ActionError(
                f"Expected button actions of 0 or 1, got {arr[tuple(bad)]} at env {bad[0]}, "
                f"button {bad[1]} ({self.buttons[bad[1]]})"
            )
        return arr

    def check_env_ids(self, env_ids: Any, in_flight: np.ndarray) -> np.ndarray:
        """Validate async ``env_ids``: distinct envs of the pool, none still running."""
        num_envs = self.num_envs
        ids = np.asarray(env_ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or ids.size == 0:
            raise InvalidArgumentError(
                f"Expected env_ids to be a non-empty 1-D array of ints, got {ids.dtype} array "
                f"of shape {ids.shape}"
            )
        if ids.min() < 0 or ids.max() >= num_envs:
            raise InvalidArgumentError(f"Expected env_ids in [0, {num_envs}), got {ids.tolist()}")
        if len(np.unique(ids)) != len(ids):
            raise InvalidArgumentError(f"Expected distinct env_ids, got {ids.tolist()}")
        busy = ids[in_flight[ids]]
        if busy.size:
            raise StateMachineError(
                f"Cannot send to envs {busy.tolist()}: they are still running (recv them first)"
            )
        return ids.astype(np.intp)
