"""sequences.py on its own: the checks, the staging into shared rows and the infos read back."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fastretro.errors import ActionError, InvalidArgumentError
from fastretro.runtime.protocol import ActionMode, Command
from fastretro.runtime.sequences import SequenceRows, check_sequences, step_rewards

HIGH = np.array([5])


def rows(num_envs: int = 3, k: int = 4, width: int = 1) -> dict[str, np.ndarray]:
    """The shared arrays SequenceRows reads and writes, as plain memory."""
    return {
        "seq_actions": np.zeros((num_envs, k, width), np.int64),
        "seq_len": np.zeros(num_envs, np.int64),
        "seq_steps": np.zeros(num_envs, np.int64),
        "seq_rewards": np.zeros((num_envs, k), np.float32),
        "cmd": np.zeros(num_envs, np.int32),
    }


def test_stage_writes_the_rows_their_lengths_and_commands():
    a = rows()
    seqs = SequenceRows(a, 4, int(ActionMode.INDEX), HIGH)
    longest = seqs.stage([[1, 2, 0], [4, 4, 4], [3, 0, 0]], [2, 3, 1], None)
    assert longest == 3
    np.testing.assert_array_equal(a["seq_len"], [2, 3, 1])
    np.testing.assert_array_equal(a["seq_actions"][1, :3, 0], [4, 4, 4])
    assert (a["cmd"] == Command.SEQUENCE).all()


def test_stage_to_some_envs_leaves_the_others():
    a = rows()
    seqs = SequenceRows(a, 4, int(ActionMode.INDEX), HIGH)
    assert seqs.stage([[2, 2, 2, 2]], [4], np.array([2])) == 4
    np.testing.assert_array_equal(a["seq_len"], [0, 0, 4])
    np.testing.assert_array_equal(a["cmd"], [0, 0, Command.SEQUENCE])


def test_rewards_past_the_steps_run_read_as_zero():
    seq_rewards = np.array([[1, 2, 3], [4, 5, 6]], np.float32)
    np.testing.assert_array_equal(step_rewards(seq_rewards, [1, 3]), [[1, 0, 0], [4, 5, 6]])
    assert seq_rewards[0, 2] == 3  # a copy


def test_lock_step_infos_mark_every_env():
    a = rows(2, 3)
    a["seq_steps"][:] = [2, 1]
    a["seq_rewards"][:] = [[1, 1, 9], [2, 9, 9]]
    infos = SequenceRows(a, 3, int(ActionMode.INDEX), HIGH).infos()
    np.testing.assert_array_equal(infos["sequence_steps"], [2, 1])
    np.testing.assert_array_equal(infos["sequence_rewards"], [[1, 1, 0], [2, 0, 0]])
    assert infos["_sequence_steps"].all() and infos["_sequence_rewards"].all()


def test_async_infos_report_a_plain_step_as_a_sequence_of_one_and_clear_lengths():
    a = rows(3, 3)
    a["seq_len"][:] = [3, 0, 2]
    a["seq_steps"][:] = [3, 7, 1]
    a["seq_rewards"][:] = [[1, 2, 3], [9, 9, 9], [4, 9, 9]]
    seqs = SequenceRows(a, 3, int(ActionMode.INDEX), HIGH)
    infos = seqs.batch_infos(np.array([0, 1, 2]), np.array([6.0, 0.5, 4.0]))
    np.testing.assert_array_equal(infos["sequence_steps"], [3, 1, 1])
    np.testing.assert_array_equal(infos["_sequence_steps"], [True, False, True])
    np.testing.assert_array_equal(infos["sequence_rewards"], [[1, 2, 3], [0.5, 0, 0], [4, 0, 0]])
    np.testing.assert_array_equal(a["seq_len"], [0, 0, 0])


def test_button_sequences_take_bools_and_shape_as_rows():
    flat, lens = check_sequences(
        np.ones((2, 3, 4), bool), [3, 1], 2, 3, int(ActionMode.BITS), np.full(4, 2)
    )
    assert flat.shape == (2, 3, 4) and flat.dtype == np.int64
    np.testing.assert_array_equal(lens, [3, 1])


def test_values_past_a_sequences_length_are_not_checked():
    flat, _ = check_sequences([[1, 99]], [1], 1, 2, int(ActionMode.INDEX), HIGH)
    assert flat[0, 0, 0] == 1


@pytest.mark.parametrize(
    "args, error, message",
    [
        (([[1]], [1], 1, 0), InvalidArgumentError, "this pool was made with sequence_length=0"),
        (
            ([[1]], [1, 1], 1, 4),
            InvalidArgumentError,
            "Expected lengths to be 1 ints (one per env)",
        ),
        (([[1]], [1.0], 1, 4), InvalidArgumentError, "Expected lengths to be 1 ints (one per env)"),
        (([[1]], [5], 1, 4), InvalidArgumentError, "in [1, 4] (sequence_length), got 5 at row 0"),
        (([[1]], [0], 1, 4), InvalidArgumentError, "in [1, 4] (sequence_length), got 0 at row 0"),
        (([[1]], [2], 1, 4), ActionError, "shape (rows, L) = (1, L >= 2), got (1, 1)"),
        (([[0.5]], [1], 1, 4), ActionError, "Expected integer sequence actions, got float64"),
        (
            ([[1, 5]], [2], 1, 4),
            ActionError,
            "in [0, 5) for this action set, got 5 at row 0, step 1",
        ),
    ],
)
def test_bad_sequences_raise_saying_what_was_expected(args, error, message):
    with pytest.raises(error, match=re.escape(message)):
        check_sequences(*args, int(ActionMode.INDEX), HIGH)


def test_bad_group_sequences_name_the_column():
    message = "got 2 at row 0, step 0, column 1"
    with pytest.raises(ActionError, match=re.escape(message)):
        check_sequences([[[0, 2]]], [1], 1, 2, int(ActionMode.GROUPS), np.array([3, 2]))
    with pytest.raises(ActionError, match=re.escape("(rows, L, width) = (1, L >= 1, 2)")):
        check_sequences([[0, 1]], [1], 1, 2, int(ActionMode.GROUPS), np.array([3, 2]))
