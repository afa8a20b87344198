"""ActionStaging on its own: which actions take the fast path, and the checks' messages."""

from __future__ import annotations

import re

import numpy as np
import pytest

from fastretro.errors import ActionError, InvalidArgumentError, StateMachineError
from fastretro.runtime.protocol import ActionMode
from fastretro.runtime.staging import ActionStaging

BUTTONS = ("B", "A", "LEFT", "RIGHT")


def staging(mode: ActionMode, sizes, rows_name: str = "num_envs") -> ActionStaging:
    return ActionStaging(3, BUTTONS, int(mode), sizes, io=None, rows_name=rows_name)


def test_fast_form_takes_only_the_exact_dtype_and_shape():
    index = staging(ActionMode.INDEX, (5,))
    assert index.width == 1 and index.index_high == 5
    a = np.array([0, 4, 2], np.int64)
    assert index.fast_form(a, 3) is a
    assert index.fast_form(a.astype(np.int32), 3) is None
    assert index.fast_form([0, 4, 2], 3) is None
    assert index.fast_form(a, 2) is None

    bits = staging(ActionMode.BITS, (2,) * 4)
    b = np.zeros((3, 4), np.bool_)
    assert bits.fast_form(b, 3).dtype == np.uint8
    assert bits.fast_form(b.astype(np.uint8), 3) is not None
    assert bits.fast_form(b.astype(np.int64), 3) is None
    assert staging(ActionMode.GROUPS, (3, 2)).fast_form(np.zeros((3, 2), np.int64), 3) is None


def test_check_converts_what_it_can():
    np.testing.assert_array_equal(
        staging(ActionMode.INDEX, (5,)).check([1, 2, 4], 3), [[1], [2], [4]]
    )
    groups = staging(ActionMode.GROUPS, (3, 2)).check(np.array([[2, 1], [0, 0], [1, 1]]), 3)
    assert groups.shape == (3, 2)
    bits = staging(ActionMode.BITS, (2,) * 4).check([[1, 0, 0, 1]] * 3, 3)
    assert bits.shape == (3, 4)


@pytest.mark.parametrize(
    "mode, sizes, actions, message",
    [
        (ActionMode.INDEX, (5,), [1, 2], "Expected actions of shape (3,) (num_envs,), got (2,)"),
        (ActionMode.INDEX, (5,), [0.5, 1, 2], "Expected an integer dtype for action indices"),
        (
            ActionMode.INDEX,
            (5,),
            [0, 5, 1],
            "Expected actions in [0, 5) for this action set, got 5",
        ),
        (ActionMode.GROUPS, (3, 2), [[0, 2]] * 3, "got 2 at env 0, group 1"),
        (
            ActionMode.GROUPS,
            (3, 2),
            [0, 1, 2],
            "Expected actions of shape (3, 2) (num_envs, groups)",
        ),
        (
            ActionMode.BITS,
            (2,) * 4,
            [[0, 1]] * 3,
            "Expected actions of shape (3, 4) (num_envs, buttons)",
        ),
        (
            ActionMode.BITS,
            (2,) * 4,
            [[0.0] * 4] * 3,
            "Expected an integer or bool dtype for button",
        ),
        (ActionMode.BITS, (2,) * 4, [[0, 0, 2, 0]] * 3, "got 2 at env 0, button 2 (LEFT)"),
    ],
)
def test_bad_actions_raise_saying_what_was_expected(mode, sizes, actions, message):
    with pytest.raises(ActionError, match=re.escape(message)):
        staging(mode, sizes).check(actions, 3)


def test_async_messages_name_the_rows_by_env_ids():
    with pytest.raises(ActionError, match=re.escape("(2,) (len(env_ids),), got (3,)")):
        staging(ActionMode.INDEX, (5,), rows_name="len(env_ids)").check([1, 2, 3], 2)


def test_env_ids_are_distinct_envs_of_the_pool_and_not_in_flight():
    stage = staging(ActionMode.INDEX, (5,))
    idle = np.zeros(3, bool)
    assert stage.check_env_ids([2, 0], idle).dtype == np.intp
    cases = [
        ([], InvalidArgumentError, "Expected env_ids to be a non-empty 1-D array of ints"),
        ([[0]], InvalidArgumentError, "Expected env_ids to be a non-empty 1-D array of ints"),
        ([0, 3], InvalidArgumentError, "Expected env_ids in [0, 3), got [0, 3]"),
        ([1, 1], InvalidArgumentError, "Expected distinct env_ids, got [1, 1]"),
    ]
    for ids, error, message in cases:
        with pytest.raises(error, match=re.escape(message)):
            stage.check_env_ids(ids, idle)
    busy = np.array([False, True, False])
    message = "Cannot send to envs [1]: they are still running (recv them first)"
    with pytest.raises(StateMachineError, match=re.escape(message)):
        stage.check_env_ids([0, 1], busy)
