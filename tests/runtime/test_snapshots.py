"""Snapshots: each episode's best state, published at its end, restored mid-episode elsewhere."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import GAME

from fastretro import Snapshot, VecRetroEnv
from fastretro.errors import InvalidArgumentError, StateMachineError

LIMIT = 160
RNG = np.random.default_rng(0)
# Random buttons with fire (B) held for 70 steps (Airstriker's first kills come at ~55), then
# none: the episode's best is reached early, and a restore has room to score again.
PREFIX = RNG.integers(0, 2, (LIMIT, 12))
PREFIX[:, 0] = 1
PREFIX[70:] = 0
AFTER = np.random.default_rng(4).integers(0, 2, (LIMIT, 12))  # scores 3 kills after step 65
AFTER[:, 0] = 1


def pool(**kw):
    options = dict(
        num_envs=3,
        frameskip=4,
        max_episode_steps=LIMIT,
        snapshot_best=True,
        autoreset_mode="same_step",
        copy=True,
    )
    return VecRetroEnv(GAME, **{**options, **kw})


def episode_with_snapshot(env):
    """Run every env through one episode of PREFIX; return env 0's snapshot."""
    env.reset(seed=0)
    total = np.zeros(env.num_envs)
    returns = []
    for t in range(LIMIT):
        _, r, _, truncated, _ = env.step(np.stack([PREFIX[t]] * env.num_envs))
        total += r
        returns.append(total[0])
    assert truncated.all()
    return env.best_snapshot(0), np.array(returns)


@pytest.mark.parametrize(
    "options", [{}, {"grayscale": True, "resize": (84, 84), "max_pool": True, "frame_stack": 4}]
)
def test_restore_goes_on_exactly_as_replaying_the_prefix_from_reset(options):
    with pool(**options) as env:
        snap, returns = episode_with_snapshot(env)
        k = snap.episode_step
        # The episode's best return, reached first at step k.
        assert snap.episode_return == returns.max() > 0
        assert k == int(np.argmax(returns)) + 1 <= 70
        assert snap.game == GAME and len(snap.state) > 0
        # Env 2 replays the prefix from reset (sticky 0: deterministic); env 1 loads the state.
        for t in range(k):
            env.step(np.stack([PREFIX[t]] * 3))
        obs, infos = env.restore({1: snap})
        assert infos["score"][1] == infos["score"][2] == snap.episode_return
        # The newest frame is the snapshot's screen (max-pooled frames differ: no frame before).
        if "max_pool" not in options:
            np.testing.assert_array_equal(obs[1], obs[2])
        gained = 0.0
        for t in range(k, LIMIT):
            obs, r, terminated, truncated, infos = env.step(np.stack([AFTER[t]] * 3))
            assert (r[1], terminated[1], truncated[1]) == (r[2], terminated[2], truncated[2])
            np.testing.assert_array_equal(obs[1][..., -1], obs[2][..., -1])
            gained += r[1]
        # The step count went on from k: the limit truncated both at the same step.
        assert truncated[1] and truncated[2]
        assert gained > 0  # the comparison covered steps that scored


def test_an_episode_after_a_restore_publishes_its_own_best():
    with pool(num_envs=1, observe=False) as env:
        snap, _ = episode_with_snapshot(env)
        env.restore({0: snap})
        with pytest.raises(StateMachineError, match="no snapshot: it has not finished an episode"):
            env.best_snapshot(0)
        total = snap.episode_return
        for t in range(snap.episode_step, LIMIT):
            _, r, _, truncated, _ = env.step(AFTER[t][None])
            total += r[0]
        assert truncated[0]
        again = env.best_snapshot(0)
        assert again.episode_return == total >= snap.episode_return
        assert again.episode_step >= snap.episode_step
        assert again.screen is None  # observe=False keeps no screen


def test_best_snapshot_and_restore_errors():
    with pool(num_envs=2, observe=False) as env:
        env.reset(seed=0)
        with pytest.raises(StateMachineError, match="Env 0 has no snapshot"):
            env.best_snapshot(0)
        with pytest.raises(InvalidArgumentError, match=r"Expected an env_id in \[0, 2\), got 2"):
            env.best_snapshot(2)
        with pytest.raises(InvalidArgumentError, match="Expected a non-empty"):
            env.restore({})
        with pytest.raises(InvalidArgumentError, match="Expected a Snapshot for env 0, got bytes"):
            env.restore({0: b"state"})
        other = Snapshot("SonicTheHedgehog-Genesis-v0", b"", 1, 0.0)
        with pytest.raises(InvalidArgumentError, match="a snapshot of SonicTheHedgehog-Genesis"):
            env.restore({1: other})
        huge = Snapshot(GAME, bytes(1 << 24), 1, 0.0)
        with pytest.raises(InvalidArgumentError, match="Expected a save state of at most"):
            env.restore({0: huge})
    with VecRetroEnv(GAME, 1, observe=False) as env:
        with pytest.raises(InvalidArgumentError, match=r"needs VecRetroEnv\(\.\.\., snapshot_best"):
            env.best_snapshot(0)


def test_restore_refuses_a_scenario_that_stable_retro_evaluates():
    with pool(num_envs=1, observe=False, scenario_engine="stable-retro") as env:
        snap, _ = episode_with_snapshot(env)
        with pytest.raises(InvalidArgumentError, match="Cannot restore env 0: stable-retro"):
            env.restore({0: snap})


def test_restore_refuses_a_recording_pool(tmp_path):
    with pool(num_envs=1, observe=False, record=str(tmp_path)) as env:
        snap, _ = episode_with_snapshot(env)
        with pytest.raises(InvalidArgumentError, match="while recording"):
            env.restore({0: snap})


def test_restore_and_async_restore_each_need_their_mode():
    with pool(num_envs=2, observe=False, batch_size=1) as env:
        with pytest.raises(StateMachineError, match=r"in async mode \(batch_size=1\); use async_r"):
            env.restore({0: Snapshot(GAME, b"", 1, 0.0)})
        env.async_reset(seed=0)  # both envs running
        with pytest.raises(StateMachineError, match="async_restore for env 0 while it is running"):
            env.async_restore({0: Snapshot(GAME, b"", 1, 0.0)})
        with pytest.raises(StateMachineError, match="best_snapshot for env 1 while it is running"):
            env.best_snapshot(1)
    with pool(num_envs=1, observe=False) as env:
        with pytest.raises(StateMachineError, match="Cannot call async_restore: this pool is in"):
            env.async_restore({0: Snapshot(GAME, b"", 1, 0.0)})


@pytest.mark.parametrize("driver", ["send", "send_sequences"])
def test_async_restore_goes_on_as_the_lock_step_restore(driver):
    with pool(num_envs=1, observe=False) as env:
        snap, _ = episode_with_snapshot(env)
        env.restore({0: snap})
        expected = []
        for t in range(snap.episode_step, LIMIT):
            _, r, terminated, truncated, _ = env.step(AFTER[t][None])
            expected.append((r[0], terminated[0], truncated[0]))
    steps = LIMIT - snap.episode_step
    sequences = {"sequence_length": steps} if driver == "send_sequences" else {}
    with pool(num_envs=2, observe=False, batch_size=1, **sequences) as env:
        env.async_reset(seed=0)
        for _ in range(2):  # the two resets; env 1 then stays idle
            env.recv()
        env.async_restore({0: snap})
        _, r, terminated, truncated, infos = env.recv()
        assert infos["env_id"][0] == 0 and r[0] == 0 and not (terminated[0] or truncated[0])
        assert infos["score"][0] == snap.episode_return
        got = []
        if driver == "send":
            for t in range(snap.episode_step, LIMIT):
                env.send(AFTER[t][None], [0])
                _, r, terminated, truncated, _ = env.recv()
                got.append((r[0], terminated[0], truncated[0]))
        else:
            env.send_sequences(AFTER[None, snap.episode_step :], np.array([steps]), [0])
            _, _, terminated, truncated, infos = env.recv()
            assert infos["sequence_steps"][0] == steps and truncated[0]
            rewards = infos["sequence_rewards"][0, :steps]
            got = [(r, False, t == steps - 1) for t, r in enumerate(rewards)]
    assert got == expected
    assert sum(r for r, _, _ in got) > 0  # the comparison covered steps that scored


def test_restore_after_an_episode_end_with_next_step_autoreset_goes_on_from_the_snapshot():
    # NEXT_STEP: the ended env would reset on its next step; a restore replaces that reset.
    with pool(num_envs=2, observe=False, autoreset_mode="next_step") as env:
        env.reset(seed=0)
        for t in range(LIMIT):
            _, _, _, truncated, _ = env.step(np.stack([PREFIX[t]] * 2))
        assert truncated.all()
        snap = env.best_snapshot(0)
        _, infos = env.restore({0: snap})
        _, r, terminated, truncated, infos = env.step(np.stack([AFTER[0]] * 2))
        # Env 0 stepped on from the snapshot's score; env 1 spent the step on its reset.
        assert infos["score"][0] >= snap.episode_return > infos["score"][1] == 0
        assert not (terminated[0] or truncated[0])


def test_async_pools_publish_snapshots_too():
    with pool(num_envs=2, observe=False, batch_size=1, max_episode_steps=20) as env:
        env.async_reset(seed=0)
        ended = None
        for _ in range(200):
            _, _, terminated, truncated, infos = env.recv()
            i = int(infos["env_id"][0])
            if terminated[0] or truncated[0]:
                ended = i
                break
            env.send(PREFIX[:1], [i])
        assert ended is not None
        snap = env.best_snapshot(ended)
        assert 1 <= snap.episode_step <= 20 and snap.game == GAME


@pytest.mark.parametrize(
    "snap, message",
    [
        (
            Snapshot(GAME, b"", 1, 0.0),
            "Expected a non-empty save state (bytes) for env 1, got 0 bytes",
        ),
        (
            Snapshot(GAME, bytearray(8), 1, 0.0),
            "Expected a non-empty save state (bytes) for env 1, got bytearray",
        ),
        (
            Snapshot(GAME, bytes(8), -1, 0.0),
            "Expected the snapshot for env 1 to have an int episode_step >= 0, got -1",
        ),
        (
            Snapshot(GAME, bytes(8), 1.5, 0.0),
            "Expected the snapshot for env 1 to have an int episode_step >= 0, got 1.5",
        ),
        (
            Snapshot(GAME, bytes(8), 1, float("nan")),
            "Expected the snapshot for env 1 to have a finite episode_return, got nan",
        ),
        (
            Snapshot(GAME, bytes(8), 1, float("-inf")),
            "Expected the snapshot for env 1 to have a finite episode_return, got -inf",
        ),
    ],
)
def test_restore_refuses_a_snapshot_the_parent_can_tell_is_broken(snap, message):
    with pool(num_envs=2, observe=False) as env:
        env.reset(seed=0)
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            env.restore({1: snap})
        # Refused before any worker saw it: the pool goes on.
        env.step(np.stack([PREFIX[0]] * 2))


@pytest.mark.parametrize("batch_size", [None, 1])
@pytest.mark.parametrize(
    ("backend", "emulator"), [("stable-retro", "stable-retro"), ("libretro", "Genesis Plus GX")]
)
def test_restore_of_a_state_the_emulator_refuses_raises_naming_the_env(
    batch_size, backend, emulator
):
    garbage = Snapshot(GAME, b"not a save state", 1, 0.0)
    with pool(num_envs=2, observe=False, batch_size=batch_size, backend=backend) as env:
        message = (
            f"Cannot restore env 1: Expected a save state of {GAME} from save_state(), got 16 "
            f"bytes that {emulator} does not accept"
        )
        with pytest.raises(InvalidArgumentError, match=re.escape(message)):
            if batch_size is None:
                env.reset(seed=0)
                env.restore({1: garbage})
            else:
                env.async_reset(seed=0)
                env.recv()
                env.recv()
                env.async_restore({1: garbage})
                env.recv()
        assert env.closed
