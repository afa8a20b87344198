"""Async mode (batch_size < num_envs): send/recv return whichever envs finish first."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import GAME

from fastretro import ActionError, InvalidArgumentError, StateMachineError, VecRetroEnv


def per_env_actions(num_envs, steps, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (num_envs, steps, 12), dtype=np.uint8)


def lock_step_observations(acts, **options):
    """obs[i][t]: env i's observation after t steps (t = 0: the reset's), in lock-step."""
    n, steps = acts.shape[:2]
    with VecRetroEnv(GAME, n, **options) as env:
        obs, _ = env.reset(seed=0)
        out = [obs.copy()]
        for t in range(steps):
            obs, *_ = env.step(acts[:, t])
            out.append(obs.copy())
    return np.stack(out, axis=1)


def run_async(acts, batch_size, dtype=None, **options):
    """Drive env i with acts[i] in async mode; return obs[i][t] and the order of env ids.

    ``dtype``: send env ids and actions with that dtype (default: as numpy builds them, int64
    ids and the actions' own dtype, which takes send's staging fast path).
    """
    n, steps = acts.shape[:2]
    seen = [[] for _ in range(n)]
    order = []
    with VecRetroEnv(GAME, n, batch_size=batch_size, **options) as env:
        env.async_reset(seed=0)
        while min(len(s) for s in seen) <= steps:
            obs, rew, term, trunc, infos = env.recv()
            ids = infos["env_id"]
            assert len(ids) == batch_size and len(set(ids.tolist())) == batch_size
            order.extend(ids.tolist())
            send_ids, send_acts = [], []
            for j, i in enumerate(ids):
                seen[i].append(obs[j].copy())
                t = len(seen[i]) - 1
                send_ids.append(i)
                send_acts.append(acts[i, min(t, steps - 1)])
            send_acts, send_ids = np.array(send_acts), np.array(send_ids)
            if dtype is not None:
                send_acts, send_ids = send_acts.astype(dtype), send_ids.astype(dtype)
            env.send(send_acts, send_ids)
    return [np.stack(s[: steps + 1]) for s in seen], order


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_async_envs_see_exactly_what_lock_step_envs_see(batch_size):
    acts = per_env_actions(4, 12)
    expected = lock_step_observations(acts)
    got, order = run_async(acts, batch_size)
    assert set(order) == {0, 1, 2, 3}
    for i in range(4):
        np.testing.assert_array_equal(got[i], expected[i], err_msg=f"env {i}")


@pytest.mark.parametrize("dtype", [None, np.int32])
def test_async_index_actions_drive_the_envs_as_lock_step_does(dtype):
    # int64 ids and indices take send's staging fast path (dtype None); int32 the Python path.
    acts = np.random.default_rng(2).integers(0, 7, (3, 12))
    expected = lock_step_observations(acts, actions="sonic7")
    got, _ = run_async(acts, 2, dtype=dtype, actions="sonic7")
    for i in range(3):
        np.testing.assert_array_equal(got[i], expected[i], err_msg=f"env {i}")


def test_rejected_fast_sends_write_nothing_and_leave_the_envs_free():
    with VecRetroEnv(GAME, 3, batch_size=2, observe=False, actions="sonic7") as env:
        env.async_reset()
        ids = env.recv()[4]["env_id"]
        a = int(ids[0])
        with pytest.raises(
            InvalidArgumentError, match=re.escape(f"Expected distinct env_ids, got [{a}, {a}]")
        ):
            env.send(np.zeros(2, np.int64), np.array([a, a]))
        with pytest.raises(
            ActionError,
            match=re.escape("Expected actions in [0, 7) for this action set, got 7 at env 1"),
        ):
            env.send(np.array([0, 7]), ids)
        env.send(np.array([1, 2]), ids)  # both envs were left free by the rejected sends
        assert len(env.recv()[4]["env_id"]) == 2


def test_async_frame_stacks_follow_each_env():
    options = {"grayscale": True, "resize": (42, 42), "frame_stack": 3, "frameskip": 2}
    acts = per_env_actions(3, 10, seed=1)
    expected = lock_step_observations(acts, **options)
    got, _ = run_async(acts, 2, **options)
    for i in range(3):
        np.testing.assert_array_equal(got[i], expected[i], err_msg=f"env {i}")


def test_recv_results_are_copies_and_infos_name_the_envs():
    with VecRetroEnv(GAME, 3, batch_size=2, max_episode_steps=2, autoreset_mode="same_step") as env:
        env.async_reset(seed=0)
        obs, rew, term, trunc, infos = env.recv()
        assert obs.shape == (2, 224, 320, 3) and obs.flags.writeable and obs.flags.owndata
        assert infos["env_id"].dtype == np.int64 and infos["score"].shape == (2,)
        truncated_seen = False
        for _ in range(12):
            ids = infos["env_id"]
            env.send(np.zeros((2, 12), np.uint8), ids)
            obs, rew, term, trunc, infos = env.recv()
            if trunc.any():
                truncated_seen = True
                j = int(np.flatnonzero(trunc)[0])
                assert infos["_final_obs"][j] and infos["final_obs"][j].shape == (224, 320, 3)
        assert truncated_seen


def test_close_with_envs_in_flight_stops_every_worker_cleanly():
    env = VecRetroEnv(GAME, 4, batch_size=1)
    procs = list(env._workers.procs)
    env.async_reset()
    env.recv()
    env.close()  # three envs were still running their reset
    assert procs and [p.exitcode for p in procs] == [0] * len(procs)


def test_async_mode_misuse_raises_typed_errors():
    with VecRetroEnv(GAME, 3, batch_size=2, observe=False) as env:
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call step: this pool is in async mode (batch_size=2); use async_reset, "
                "send and recv"
            ),
        ):
            env.step(np.zeros((3, 12), np.uint8))
        with pytest.raises(
            StateMachineError,
            match=re.escape("Cannot call recv with 0 envs running and batch_size=2"),
        ):
            env.recv()
        env.async_reset()
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call async_reset while envs [0, 1, 2] are running: recv them first"
            ),
        ):
            env.async_reset()
        _, _, _, _, infos = env.recv()
        ids = infos["env_id"]
        busy = int(({0, 1, 2} - set(ids.tolist())).pop())
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                f"Cannot send to envs [{busy}]: they are still running (recv them first)"
            ),
        ):
            env.send(np.zeros((1, 12), np.uint8), [busy])
        with pytest.raises(
            ActionError,
            match=re.escape(
                "Expected actions of shape (2, 12) (len(env_ids), buttons), got (3, 12)"
            ),
        ):
            env.send(np.zeros((3, 12), np.uint8), ids)
        with pytest.raises(
            InvalidArgumentError, match=re.escape("Expected env_ids in [0, 3), got [0, 5]")
        ):
            env.send(np.zeros((2, 12), np.uint8), [0, 5])
        with pytest.raises(
            InvalidArgumentError, match=re.escape("Expected distinct env_ids, got [1, 1]")
        ):
            env.send(np.zeros((2, 12), np.uint8), [1, 1])
        with pytest.raises(
            InvalidArgumentError,
            match=re.escape(
                "Expected env_ids to be a non-empty 1-D array of ints, got float64 array of "
                "shape (2,)"
            ),
        ):
            env.send(np.zeros((2, 12), np.uint8), np.array([0.0, 1.0]))
        env.send(np.zeros((2, 12), np.uint8), ids)  # still usable after the rejected calls
        env.recv()


def test_lock_step_pools_reject_send_and_recv():
    with VecRetroEnv(GAME, 2, observe=False) as env:
        with pytest.raises(
            StateMachineError,
            match=re.escape(
                "Cannot call recv: this pool is in lock-step mode; create it with batch_size=M"
            ),
        ):
            env.recv()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "Expected batch_size >= 1, got 0"),
        ({"batch_size": 5}, "Expected batch_size <= num_envs=4, got 5"),
        (
            {"batch_size": 2, "autoreset_mode": "disabled"},
            "Expected autoreset_mode NEXT_STEP or SAME_STEP with batch_size (async mode), "
            "got DISABLED",
        ),
    ],
)
def test_bad_async_options_raise_before_any_worker_starts(options, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        VecRetroEnv(GAME, 4, **options)


def test_async_reset_after_every_env_came_back_starts_a_clean_round():
    # Two rounds of async_reset and recv: the second arms for its own completions only.
    with VecRetroEnv(GAME, 2, batch_size=1, observe=False, step_timeout=20) as env:
        for _ in range(2):
            env.async_reset(seed=0)
            got = sorted(int(env.recv()[4]["env_id"][0]) for _ in range(2))
            assert got == [0, 1]
