"""SnapshotSlots on its own: a snapshot's round trip through the slots, and every refusal."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from fastretro.errors import InvalidArgumentError, StateMachineError
from fastretro.runtime.protocol import Command
from fastretro.runtime.snapshots import Snapshot, SnapshotSlots

SCREEN = (4, 5, 3)


def slots(num_envs: int = 2, capacity: int = 16, **kw) -> SnapshotSlots:
    arrays = {
        "snap": np.zeros((num_envs, capacity), np.uint8),
        "snap_len": np.zeros(num_envs, np.int64),
        "snap_step": np.zeros(num_envs, np.int64),
        "snap_return": np.zeros(num_envs, np.float64),
        "snap_screen": np.zeros((num_envs, *SCREEN), np.uint8),
        "cmd": np.zeros(num_envs, np.int32),
    }
    options = dict(recording=False, observe=True, enabled=True, running=None)
    options.update(kw)
    return SnapshotSlots(
        arrays, ["G-v0"] * num_envs, ("fastretro",) * num_envs, [""] * num_envs, **options
    )


def snapshot(**changes) -> Snapshot:
    snap = Snapshot("G-v0", b"\x01\x02\x03", 7, 2.5, np.full(SCREEN, 9, np.uint8))
    return dataclasses.replace(snap, **changes)


def test_a_staged_snapshot_reads_back_as_it_went_in():
    s = slots()
    mask = s.stage({1: snapshot()}, "restore")
    np.testing.assert_array_equal(mask, [False, True])
    np.testing.assert_array_equal(s.a["cmd"], [0, Command.RESTORE])
    back = s.read(1)
    assert (back.game, back.state, back.episode_step, back.episode_return) == (
        "G-v0",
        b"\x01\x02\x03",
        7,
        2.5,
    )
    np.testing.assert_array_equal(back.screen, snapshot().screen)


def test_best_needs_a_snapshot_published_since_the_last_restore():
    s = slots()
    message = "Env 0 has no snapshot: it has not finished an episode since the pool started"
    with pytest.raises(StateMachineError, match=re.escape(message)):
        s.best(0)
    s.write({0: snapshot()})
    s.fresh[0] = True  # what the pool does when the worker publishes one
    assert s.best(0).episode_step == 7
    s.write({0: snapshot()})
    with pytest.raises(StateMachineError, match="Env 0 has no snapshot"):
        s.best(0)


def test_without_observations_a_snapshot_carries_no_screen():
    s = slots(observe=False)
    s.write({0: snapshot(screen=None)})
    assert s.read(0).screen is None


@pytest.mark.parametrize(
    "snap, message",
    [
        ("state", "Expected a Snapshot for env 0, got str"),
        (snapshot(game="H-v0"), "Cannot restore a snapshot of H-v0 into env 0, which runs G-v0"),
        (snapshot(screen=None), "to hold a screen of shape (4, 5, 3), got None"),
        (
            snapshot(screen=np.zeros((2, 2, 3))),
            "to hold a screen of shape (4, 5, 3), got (2, 2, 3)",
        ),
        (snapshot(state=b""), "Expected a non-empty save state (bytes) for env 0, got 0 bytes"),
        (snapshot(state="abc"), "Expected a non-empty save state (bytes) for env 0, got str"),
        (snapshot(episode_step=-1), "to have an int episode_step >= 0, got -1"),
        (snapshot(episode_step=True), "to have an int episode_step >= 0, got True"),
        (snapshot(episode_return=float("inf")), "to have a finite episode_return, got inf"),
        (snapshot(state=bytes(17)), "Expected a save state of at most 16 bytes for env 0, got 17"),
    ],
)
def test_bad_snapshots_raise_before_any_worker_sees_them(snap, message):
    s = slots()
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        s.stage({0: snap}, "restore")
    assert (s.a["cmd"] == 0).all()


def test_env_checks_name_the_call():
    with pytest.raises(
        InvalidArgumentError, match=re.escape("Expected an env_id in [0, 2), got 2")
    ):
        slots().check_env(2, "restore")
    with pytest.raises(InvalidArgumentError, match=re.escape("got True")):
        slots().check_env(True, "restore")
    message = "best_snapshot needs VecRetroEnv(..., snapshot_best=True)"
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        slots(enabled=False).check_env(0, "best_snapshot")
    message = "Cannot call async_restore for env 1 while it is running: recv it first"
    with pytest.raises(StateMachineError, match=re.escape(message)):
        slots(running=np.array([False, True])).check_env(1, "async_restore")
    with pytest.raises(InvalidArgumentError, match="Expected a non-empty {env_id: Snapshot}"):
        slots().stage({}, "restore")


def test_restores_are_refused_where_the_state_cannot_carry_the_episode():
    recording = slots(recording=True)
    with pytest.raises(InvalidArgumentError, match="while recording: its .bk2 movie replays"):
        recording.stage({0: snapshot()}, "restore")
    arrays = slots().a
    engine = SnapshotSlots(
        arrays, ["G-v0"], ("stable-retro",), ["its Lua script"], False, True, True, None
    )
    message = "Cannot restore env 0: stable-retro evaluates its scenario, and a save state does "
    with pytest.raises(InvalidArgumentError, match=re.escape(message) + r".*\(its Lua script\)"):
        engine.stage({0: snapshot()}, "restore")
