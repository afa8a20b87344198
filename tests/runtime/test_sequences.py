"""Sequences: many steps per round trip (step_sequences, send_sequences), exactly as many steps."""

from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import GAME

from fastretro import VecRetroEnv
from fastretro.errors import ActionError, InvalidArgumentError, StateMachineError

LIMIT = 100  # short episodes, so that sequences run into their ends
SETS = {  # one action set per decoding mode
    "index": [[], ["RIGHT"], ["RIGHT", "B"], ["LEFT"], ["LEFT", "B"]],
    "buttons": "filtered",
    "groups": "multi_discrete",
}


def pool(actions, **kw):
    options = dict(
        num_envs=3,
        frameskip=4,
        sticky_prob=0.25,
        observe=False,
        max_episode_steps=LIMIT,
        actions=actions,
        autoreset_mode="same_step",
    )
    return VecRetroEnv(GAME, **{**options, **kw})


def random_actions(env, rng, shape):
    """Valid actions of ``shape + one row``, for any action set."""
    space = env.single_action_space
    high = getattr(space, "nvec", None)
    if high is None:
        high = np.full(space.shape, 2) if space.shape else np.array(space.n)
    return rng.integers(0, high, (*shape, *np.shape(high)))


def replay_streams(actions, autoreset_mode, streams):
    """Run each env's stream of actions with plain ``step``; per env: rewards, ends, last infos."""
    n, longest = len(streams), max(len(s) for s in streams)
    rewards = np.zeros((n, longest))
    ends = np.zeros((n, longest), bool)
    with pool(actions, autoreset_mode=autoreset_mode) as env:
        env.reset(seed=7)
        filler = random_actions(env, np.random.default_rng(0), (n,))
        infos_at = []
        for t in range(longest):
            batch = filler.copy()
            for i, s in enumerate(streams):
                if t < len(s):
                    batch[i] = s[t]
            _, r, term, trunc, infos = env.step(batch)
            rewards[:, t], ends[:, t] = r, term | trunc
            infos_at.append(infos)
    return rewards, ends, infos_at


@pytest.mark.parametrize("autoreset_mode", ["same_step", "next_step"])
@pytest.mark.parametrize("kind", sorted(SETS))
def test_sequences_give_exactly_what_their_steps_give(kind, autoreset_mode):
    actions = SETS[kind]
    rng = np.random.default_rng(1)
    streams: list[list] = [[], [], []]
    got_rewards: list[list[float]] = [[], [], []]
    got_ends: list[list[bool]] = [[], [], []]
    last_infos = []
    with pool(actions, autoreset_mode=autoreset_mode, sequence_length=60) as env:
        env.reset(seed=7)
        for _ in range(8):
            lengths = rng.integers(1, 61, 3)
            batch = random_actions(env, rng, (3, 60))
            _, total, term, trunc, infos = env.step_sequences(batch, lengths)
            steps = infos["sequence_steps"]
            assert (steps <= lengths).all() and (steps >= 1).all()
            # A sequence stops early only at the step that ends its episode.
            assert ((steps == lengths) | term | trunc).all()
            np.testing.assert_allclose(total, infos["sequence_rewards"].sum(axis=1))
            assert (infos["sequence_rewards"][np.arange(60) >= steps[:, None]] == 0).all()
            for i in range(3):
                streams[i].extend(batch[i, : steps[i]])
                got_rewards[i].extend(infos["sequence_rewards"][i, : steps[i]])
                got_ends[i].extend([False] * (steps[i] - 1) + [bool(term[i] or trunc[i])])
            last_infos.append((steps.copy(), {name: infos[name][0] for name in env.info_names}))
    # Some sequences ran into an episode's end, and some steps scored.
    assert any(any(e) for e in got_ends) and any(any(r) for r in got_rewards)
    rewards, ends, infos_at = replay_streams(actions, autoreset_mode, streams)
    for i in range(3):
        m = len(streams[i])
        np.testing.assert_array_equal(rewards[i, :m], got_rewards[i])
        np.testing.assert_array_equal(ends[i, :m], got_ends[i])
    # The infos of a sequence are those of its last step (env 0, after each round).
    t = -1
    for steps, info in last_infos:
        t += int(steps[0])
        for name in env.info_names:
            assert info[name] == infos_at[t][name][0]


def test_async_sequences_per_env_match_their_steps_and_plain_steps_count_as_one():
    actions = SETS["index"]
    rng = np.random.default_rng(3)
    streams: list[list] = [[], [], []]
    got: list[list[float]] = [[], [], []]
    with pool(actions, batch_size=1, sequence_length=30) as env:
        env.async_reset(seed=7)
        sent, running = ["reset"] * 3, 3  # what each env runs: "reset", "sequence", "step"
        for round_ in range(15):
            _, total, _, _, infos = env.recv()
            running -= 1
            (i,) = infos["env_id"]
            assert infos["_sequence_steps"][0] == (sent[i] == "sequence")
            if sent[i] != "reset":
                steps = infos["sequence_steps"][0]
                got[i].extend(infos["sequence_rewards"][0, :steps])
                assert total[0] == pytest.approx(infos["sequence_rewards"][0].sum())
                assert steps == 1 or sent[i] == "sequence"
            if round_ >= 12:
                continue  # let the rest finish
            running += 1
            if round_ % 4 == 3:  # now and then a plain step: a sequence of one, unmasked
                a = random_actions(env, rng, (1,))
                streams[i].extend(a)
                env.send(a, np.array([i]))
                sent[i] = "step"
                continue
            length = int(rng.integers(1, 31))
            batch = random_actions(env, rng, (1, 30))
            streams[i].extend(batch[0, :length])
            env.send_sequences(batch, [length], [i])
            sent[i] = "sequence"
        assert running == 0
    # A stream is cut where its sequence ended an episode; compare what ran, step by step.
    rewards, _, _ = replay_streams(actions, "same_step", streams)
    for i in range(3):
        assert 0 < len(got[i]) <= len(streams[i])
        np.testing.assert_array_equal(rewards[i, : len(got[i])], got[i])


@pytest.mark.parametrize(
    "make, call, error, message",
    [
        (
            {"observe": True, "sequence_length": 5},
            None,
            InvalidArgumentError,
            "sequence_length=5 needs observe=False",
        ),
        (
            {"sequence_length": -1},
            None,
            InvalidArgumentError,
            "Expected sequence_length >= 0, got -1",
        ),
        (
            {},
            (np.zeros((3, 4), np.int64), [4, 4, 4]),
            InvalidArgumentError,
            "Sequences need VecRetroEnv(..., sequence_length=K, observe=False)",
        ),
        (
            {"sequence_length": 4},
            (np.zeros((3, 4), np.int64), [4, 0, 4]),
            InvalidArgumentError,
            "Expected sequence lengths in [1, 4] (sequence_length), got 0 at row 1",
        ),
        (
            {"sequence_length": 4},
            (np.zeros((3, 4), np.int64), [4, 5, 4]),
            InvalidArgumentError,
            "Expected sequence lengths in [1, 4] (sequence_length), got 5 at row 1",
        ),
        (
            {"sequence_length": 4},
            (np.zeros((3, 4), np.int64), [4, 4]),
            InvalidArgumentError,
            "Expected lengths to be 3 ints (one per env), got int64 array of shape (2,)",
        ),
        (
            {"sequence_length": 4},
            (np.zeros((3, 2), np.int64), [1, 3, 1]),
            ActionError,
            "Expected sequence actions of shape (rows, L) = (3, L >= 3), got (3, 2)",
        ),
        (
            {"sequence_length": 4},
            (np.zeros((3, 4)), [1, 3, 1]),
            ActionError,
            "Expected integer sequence actions, got float64",
        ),
        (
            {"sequence_length": 4},
            (np.array([[0, 0, 0, 0], [0, 1, 5, 0], [0, 0, 0, 0]]), [4, 3, 4]),
            ActionError,
            "Expected sequence actions in [0, 5) for this action set, got 5 at row 1, step 2",
        ),
    ],
)
def test_bad_sequences_raise(make, call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        with pool(SETS["index"], **make) as env:
            env.reset(seed=0)
            env.step_sequences(*call)


def test_a_value_past_a_sequences_length_is_not_checked_or_run():
    with pool(SETS["index"], sequence_length=4) as env:
        env.reset(seed=0)
        _, _, _, _, infos = env.step_sequences(np.array([[1, 99], [1, 99], [1, 99]]), [1, 1, 1])
        assert (infos["sequence_steps"] == 1).all()


def test_sequences_in_the_wrong_mode_raise():
    with pool(SETS["index"], sequence_length=4, batch_size=1) as env:
        with pytest.raises(StateMachineError, match="use async_reset, send and recv"):
            env.step_sequences(np.zeros((3, 4), np.int64), [4, 4, 4])
    with pool(SETS["index"], sequence_length=4) as env:
        with pytest.raises(StateMachineError, match="create it with batch_size=M"):
            env.send_sequences(np.zeros((1, 4), np.int64), [4], [0])
    with pool(SETS["buttons"], sequence_length=4, batch_size=1) as env:
        env.async_reset(seed=0)
        (back,) = env.recv()[4]["env_id"]
        busy = (back + 1) % 3
        with pytest.raises(StateMachineError, match=rf"Cannot send to envs \[{busy}\]"):
            env.send_sequences(np.zeros((1, 4, 12), np.int64), [4], [busy])


def test_a_worker_killed_during_sequences_raises_even_in_restart_mode():
    import os
    import signal

    from fastretro.errors import WorkerDiedError

    env = pool(SETS["index"], sequence_length=8, on_worker_failure="restart")
    env.reset(seed=0)
    worker = env._workers.worker_of(2)
    victim = env._workers.procs[worker]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    message = f"Worker {worker} (pid {victim.pid}) was killed by SIGKILL during step_sequences"
    with pytest.raises(WorkerDiedError, match=re.escape(message)):
        env.step_sequences(np.ones((3, 8), np.int64), [8, 8, 8])
    assert env.closed
