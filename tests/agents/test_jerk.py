"""JERK: its kernels against one-env references, and end-to-end runs on the pool."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import naive
import numpy as np
import pytest
from conftest import GAME

from fastretro import InvalidArgumentError
from fastretro.agents import jerk_kernels as k
from fastretro.agents.jerk import PROFILES, JerkAgent, JerkConfig, jerk_actions, run
from fastretro.agents.jerk_agent import DrawStream


def act_step(envs, mode, jump_left, replay, replay_len, replay_pos, draws, prob, repeat, out):
    """One action for each env in ``envs``: the action kernel with stretches of one."""
    ones = np.ones(len(envs), np.int64)
    used = np.zeros((len(envs), 1), np.int64)
    k.jerk_plan_into(
        envs,
        ones,
        mode,
        jump_left,
        replay,
        replay_len,
        replay_pos,
        draws[:, None],
        prob,
        repeat,
        out[:, None],
        used,
    )


def record_step(envs, actions, rewards, done, *books):
    """One step of each env in ``envs``: the bookkeeping kernel with sequences of one."""
    ones = np.ones(len(envs), np.int64)
    k.jerk_record_sequences(envs, actions[:, None], rewards[:, None], ones, done, *books)


def test_action_kernel_matches_the_one_env_reference():
    rng = np.random.default_rng(0)
    n, steps = 6, 300
    mode = np.array([0, 0, 1, 1, 2, 2])
    jump_left = np.zeros(n, np.int64)
    replay = rng.integers(0, 5, (n, 20))
    replay_len = np.array([0, 0, 0, 0, 20, 7])
    replay_pos = np.zeros(n, np.int64)
    ref_state = [(int(jump_left[i]), int(replay_pos[i])) for i in range(n)]
    out = np.zeros(n, np.int64)
    for _ in range(steps):
        draws = rng.random(n)
        act_step(np.arange(n), mode, jump_left, replay, replay_len, replay_pos, draws, 0.1, 4, out)
        for i in range(n):
            action, jl, rp = naive.jerk_action(
                mode[i],
                ref_state[i][0],
                replay[i, : replay_len[i]],
                ref_state[i][1],
                draws[i],
                0.1,
                4,
            )
            ref_state[i] = (jl, rp)
            assert out[i] == action and jump_left[i] == jl and replay_pos[i] == rp
    assert set(out[:2].tolist()) <= {k.FORWARD, k.FORWARD_JUMP}


def test_jumps_hold_the_button_for_jump_repeat_steps():
    mode, jump_left = np.zeros(1, np.int64), np.zeros(1, np.int64)
    empty = np.zeros((1, 1), np.int64)
    out, seen = np.zeros(1, np.int64), []
    for draw in [0.05, 0.9, 0.9, 0.9, 0.9, 0.9]:
        act_step(
            np.arange(1),
            mode,
            jump_left,
            empty,
            np.zeros(1, np.int64),
            np.zeros(1, np.int64),
            np.array([draw]),
            0.1,
            4,
            out,
        )
        seen.append(int(out[0]))
    assert seen == [k.FORWARD_JUMP] * 4 + [k.FORWARD] * 2


@pytest.mark.parametrize("seed", range(5))
def test_best_prefix_is_the_first_step_reaching_the_maximum(seed):
    rewards = np.random.default_rng(seed).integers(-2, 3, 60).astype(float)
    # The bookkeeping kernel finds it while the episode runs, step by step.
    t, hist = np.zeros(1, np.int64), np.zeros((1, 60), np.int64)
    cum, best, best_t = np.zeros(1), np.full(1, -np.inf), np.zeros(1, np.int64)
    mode, left = np.zeros(1, np.int64), np.full(1, 100, np.int64)
    move, jump = np.zeros(1), np.zeros(1, np.int64)
    for r in rewards:
        record_step(
            np.arange(1),
            np.ones(1, np.int64),
            np.array([r]),
            np.zeros(1, bool),
            t,
            hist,
            cum,
            best,
            best_t,
            mode,
            left,
            move,
            jump,
            100,
            70,
        )
    assert best_t[0] == naive.best_prefix(rewards) and best[0] == np.cumsum(rewards).max()


def test_forward_move_that_earns_nothing_backs_off_then_goes_forward_again():
    t, hist = np.zeros(1, np.int64), np.zeros((1, 400), np.int64)
    cum, best, best_t = np.zeros(1), np.full(1, -np.inf), np.zeros(1, np.int64)
    mode, left = np.zeros(1, np.int64), np.full(1, 3, np.int64)
    move, jump = np.zeros(1), np.zeros(1, np.int64)
    modes = []
    for r in [0, 0, 0, 0, 0, 1, 1, 1, 0]:
        record_step(
            np.arange(1),
            np.ones(1, np.int64),
            np.array([float(r)]),
            np.zeros(1, bool),
            t,
            hist,
            cum,
            best,
            best_t,
            mode,
            left,
            move,
            jump,
            3,
            2,
        )
        modes.append(int(mode[0]))
    F, B = k.MODE_FORWARD, k.MODE_BACK
    # 3 forward steps earn 0 -> back 2 -> forward 3 (earn 2) -> forward again.
    assert modes == [F, F, B, B, F, F, F, F, F]


def test_sort_by_mean_follows_the_originals_list_through_replays():
    # Scores in few values so ties are common; the order carries over between sorts as the
    # original's list does, and each replay adds a score to the solution it picked.
    rng = np.random.default_rng(1)
    scores: list[list[float]] = []
    order = np.zeros(0, np.int64)
    ref: list[int] = []
    picks = []
    for _ in range(60):
        if rng.random() < 0.4 or not scores:
            scores.append([float(rng.integers(0, 3))])
            order, ref = np.append(order, len(scores) - 1), ref + [len(scores) - 1]
            continue
        k.sort_by_mean_into(
            order, np.array([sum(s) for s in scores]), np.array([len(s) for s in scores], float)
        )
        ref = naive.sort_by_mean(ref, scores)
        assert order.tolist() == ref
        picks.append(int(order[-1]))
        scores[order[-1]].append(float(rng.integers(0, 3)))
    assert len(set(picks)) > 3, "the replays should spread over several solutions"


def test_on_a_tie_the_original_replays_the_later_solution():
    order = np.array([0, 1, 2], np.int64)
    k.sort_by_mean_into(order, np.array([5.0, 5.0, 1.0]), np.ones(3))
    assert order.tolist() == [2, 0, 1]  # ascending, stable: solution 1 is replayed


def test_tiny_run_end_to_end_and_explorers_share_solutions():
    config = JerkConfig(EXPLOIT_BIAS=1.0, seed=1, replay_from="reset")
    result = run(
        GAME,
        num_envs=2,
        config=config,
        progress=False,
        pool_options={"max_episode_steps": 50},
        timesteps=600,
        open_loop=False,  # lock-step: every env steps exactly 300 times
    )
    assert result["timesteps"] == 600 and result["episodes"] == 12  # 2 envs x 300 / 50
    assert result["replay_path"] == "reset" and result["restores"] == 0
    # EXPLOIT_BIAS=1: once a solution exists every new episode replays one. Both explorers'
    # first episodes fed the one shared pool (2 solutions); all 12 later starts replayed.
    assert result["solutions"] == 2 and result["replays"] == 12
    assert result["mean_episode_reward"] is not None and result["steps_per_s"] > 0


def test_exploit_episodes_go_on_from_the_saved_state_of_the_best_solution():
    from fastretro.runtime.pool import VecRetroEnv

    profile = PROFILES[GAME]
    config = JerkConfig(EXPLOIT_BIAS=1.0, seed=0, replay_from="state")
    with VecRetroEnv(
        GAME,
        2,
        actions=jerk_actions(profile),
        observe=False,
        autoreset_mode="same_step",
        frameskip=4,
        max_episode_steps=300,
        snapshot_best=True,
    ) as env:
        agent = JerkAgent(None, env.action_space, config, horizon=300, snapshots=env.best_snapshot)
        env.reset(seed=0)
        checked = 0
        for _ in range(1500):
            _, rewards, terminated, truncated, _ = env.step(agent.act(None))
            # The agent checks at every episode end that the pool saved its state at the end
            # of the agent's own best prefix (it raises otherwise).
            agent.observe(rewards, terminated, truncated)
            if agent.pending_restores:
                _, infos = env.restore(agent.pending_restores)
                for i, snap in agent.pending_restores.items():
                    j = int(agent.restored[i])
                    seq = agent.solutions.sequences[j]
                    # The episode starts where solution j reached its best: its actions are the
                    # prefix, its score (Airstriker's reward is the score) the return so far.
                    assert agent.t[i] == snap.episode_step == len(seq)
                    np.testing.assert_array_equal(agent.history[i, : len(seq)], seq)
                    assert infos["score"][i] == agent.cumulative[i] == snap.episode_return
                    assert agent.solutions.score_sums[j] / agent.solutions.score_counts[j] > 0
                    checked += 1
                agent.pending_restores.clear()
    assert checked == agent.restores > 0 and agent.replays == 0
    # Episodes that got past their start's end added solutions that extend it.
    assert max(len(q) for q in agent.solutions.sequences) > min(
        len(q) for q in agent.solutions.sequences
    )


def test_replay_from_state_where_unsound_falls_back_or_raises():
    options = {"max_episode_steps": 50, "scenario_engine": "stable-retro"}
    result = run(
        GAME,
        num_envs=1,
        config=JerkConfig(replay_from="auto"),
        progress=False,
        pool_options=options,
        timesteps=60,
    )
    assert result["replay_path"] == "reset"
    assert "keeps state outside the emulator" in result["replay_path_why"]
    with pytest.raises(InvalidArgumentError, match="Cannot replay from saved states: the scenario"):
        run(
            GAME,
            num_envs=1,
            config=JerkConfig(replay_from="state"),
            progress=False,
            pool_options=options,
            timesteps=60,
        )


def test_cli_prints_one_json_line():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "jerk",
            "--timesteps",
            "200",
            "--num-envs",
            "2",
            "--replay-from",
            "reset",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {
        "timesteps",
        "wall_s",
        "steps_per_s",
        "episodes",
        "mean_episode_reward",
        "best_episode_reward",
    } <= set(result)
    assert result["replay_path"] == "reset" and result["restores"] == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (JerkConfig(TOTAL_TIMESTEPS=0), "Expected TOTAL_TIMESTEPS to be an int >= 1, got 0"),
        (JerkConfig(jump_prob=1.5), "Expected jump_prob in [0, 1], got 1.5"),
        (JerkConfig(EXPLOIT_BIAS=True), "Expected EXPLOIT_BIAS in [0, 1], got True"),
        (
            JerkConfig(replay_from="start"),
            "Expected replay_from 'auto', 'state' or 'reset', got 'start'",
        ),
        (
            JerkConfig(profile={"forward": ["RIGHT"]}),
            "Expected a JERK profile with 'forward', 'back' and 'jump', got {'forward': ['RIGHT']}",
        ),
    ],
)
def test_bad_configs_raise(config, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        run(GAME, num_envs=1, config=config, progress=False)


def test_action_set_order_matches_the_kernels():
    acts = jerk_actions({"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]})
    assert acts[k.NOOP] == [] and acts[k.FORWARD] == ["RIGHT"]
    assert acts[k.FORWARD_JUMP] == ["RIGHT", "B"] and acts[k.BACK_JUMP] == ["LEFT", "B"]


def test_best_sequence_movie_replays_to_its_reward(tmp_path):
    from fastretro.contest.movies import replay

    result = run(
        GAME,
        num_envs=2,
        config=JerkConfig(seed=3),
        progress=False,
        pool_options={"max_episode_steps": 120},
        timesteps=960,
        movie_dir=str(tmp_path),
    )
    assert result["best_movie"].endswith(".bk2")
    replayed = replay(result["best_movie"])
    assert replayed["reward"] == result["best_movie_reward"] > 0
    assert replayed["frames"] % 4 == 0 and replayed["frames"] > 0


def test_async_batches_step_the_same_budget_with_shared_solutions():
    result = run(
        GAME,
        num_envs=4,
        config=JerkConfig(EXPLOIT_BIAS=1.0, seed=2),
        progress=False,
        pool_options={"max_episode_steps": 40},
        timesteps=800,
        async_batches=True,
        open_loop=False,
    )
    assert result["timesteps"] == 800
    # 800 steps over 4 envs of 40-step episodes: about 20 episodes, however the halves interleave.
    assert 16 <= result["episodes"] <= 20
    assert result["solutions"] == 4 and result["replays"] == result["episodes"]


def test_plan_kernel_matches_the_one_env_reference():
    rng = np.random.default_rng(5)
    n = 5
    mode = np.array([0, 1, 2, 2, 0])
    jump_left = np.array([0, 2, 0, 0, 3])
    replay = rng.integers(0, 5, (n, 30))
    replay_len = np.array([0, 0, 30, 4, 0])
    replay_pos = np.array([0, 0, 5, 0, 0])
    lengths = np.array([100, 7, 25, 12, 1])
    draws = rng.random((n, 100))
    expected = []
    for i in range(n):
        # The original's move() draws only where the jump button is not held; a replay never.
        jl, rp, row, taken, c = int(jump_left[i]), int(replay_pos[i]), [], [], 0
        for _ in range(lengths[i]):
            c += int(mode[i] != k.MODE_REPLAY and jl == 0)
            a, jl, rp = naive.jerk_action(
                mode[i], jl, replay[i, : replay_len[i]], rp, draws[i, max(c - 1, 0)], 0.1, 4
            )
            row.append(a)
            taken.append(c)
        expected.append((row, jl, rp, taken))
    out = np.full((n, 100), -1, np.int64)
    used = np.full((n, 100), -1, np.int64)
    k.jerk_plan_into(
        np.arange(n),
        lengths,
        mode,
        jump_left,
        replay,
        replay_len,
        replay_pos,
        draws,
        0.1,
        4,
        out,
        used,
    )
    for i, (row, jl, rp, taken) in enumerate(expected):
        assert out[i, : lengths[i]].tolist() == row and (out[i, lengths[i] :] == -1).all()
        assert used[i, : lengths[i]].tolist() == taken
        assert jump_left[i] == jl and replay_pos[i] == rp
    assert k.NOOP in out[3].tolist()  # the short replay ran out: no-op after it
    assert used[2, 24] == 0 and 0 < used[0, 99] < 100  # replays draw nothing, jumps hold


def _books(n, horizon):
    """Fresh per-env arrays of jerk_record_sequences' state, in its argument order."""
    return [
        np.zeros(n, np.int64),  # t
        np.zeros((n, horizon), np.int64),  # history
        np.zeros(n),  # cumulative
        np.full(n, -np.inf),  # best
        np.zeros(n, np.int64),  # best_t
        np.array([0, 1, 2, 0][:n]),  # mode
        np.array([5, 3, 0, 100][:n]),  # steps_left
        np.zeros(n),  # move_reward
        np.array([1, 0, 0, 2][:n]),  # jump_left
    ]


@pytest.mark.parametrize("seed", range(3))
def test_record_sequences_keeps_the_books_of_its_steps_one_by_one(seed):
    rng = np.random.default_rng(seed)
    n, width = 4, 12
    actions = rng.integers(0, 5, (n, width))
    rewards = rng.integers(-1, 2, (n, width)).astype(float)
    steps = rng.integers(1, width + 1, n)
    done = rng.random(n) < 0.5
    one_by_one, at_once = _books(n, 40), _books(n, 40)
    for j in range(n):
        for s in range(steps[j]):
            record_step(
                np.array([j]),
                actions[j, s : s + 1],
                rewards[j, s : s + 1],
                np.array([done[j] and s == steps[j] - 1]),
                *one_by_one,
                3,
                2,
            )
    k.jerk_record_sequences(np.arange(n), actions, rewards, steps, done, *at_once, 3, 2)
    for a, b in zip(one_by_one, at_once):
        np.testing.assert_array_equal(a, b)


def _toy_level(action, t):
    """A level without an emulator: forward pays only in its second hundred steps."""
    return float(action in (k.FORWARD, k.FORWARD_JUMP) and 100 <= t < 200), t + 1 >= 230


@pytest.mark.parametrize("bias, jump_prob", [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)])
def test_open_loop_agent_does_what_the_per_step_agent_does(bias, jump_prob):
    # With no random choice left (jumps always or never; every episode explores, or every one
    # after the first replays) both drivers must take the same actions and keep the same books.
    config = JerkConfig(EXPLOIT_BIAS=bias, jump_prob=jump_prob, TOTAL_TIMESTEPS=10**12)
    space = type("Space", (), {"nvec": np.array([5])})()
    per_step, open_loop = JerkAgent(None, space, config), JerkAgent(None, space, config)
    t = 0
    for _ in range(2000):
        action = int(per_step.act(None)[0])
        reward, done = _toy_level(action, t)
        per_step.observe([reward], [done], [False])
        t = 0 if done else t + 1
    t, ran = 0, 0
    while ran < 2000:
        actions, lengths = open_loop.plan(np.array([0]), np.array([min(64, 2000 - ran)]))
        rewards, steps, done = np.zeros((1, lengths[0])), 0, False
        while steps < lengths[0] and not done:
            rewards[0, steps], done = _toy_level(int(actions[0, steps]), t)
            t, steps = (0 if done else t + 1), steps + 1
        open_loop.observe_sequences([0], actions, rewards, [steps], [done], [False])
        ran += steps
    assert per_step.episode_rewards == open_loop.episode_rewards
    assert len(per_step.episode_rewards) == 8  # 2000 steps of 230-step episodes
    assert per_step.replays == open_loop.replays and (per_step.replays > 0) == bool(bias)
    for a, b in zip(per_step.solutions.sequences, open_loop.solutions.sequences):
        np.testing.assert_array_equal(a, b)
    assert per_step.steps == open_loop.steps == 2000


def test_explorers_draw_from_a_stream_apart_from_the_pools_sticky_frames():
    # The pool seeds env i's sticky frames with default_rng(seed + i); the explorers' draws
    # must not be env 0's sticky draws (or any env's), or jumps and sticky frames would move
    # together. Explorer i draws what the original draws after random.seed(seed + i).
    import random

    space = type("Space", (), {"nvec": np.array([5, 5])})()
    streams = JerkAgent(None, space, JerkConfig(seed=3)).streams
    draws = [np.array([stream.random() for _ in range(16)]) for stream in streams]
    for i in range(2):
        for mine in draws:
            assert not np.isin(mine, np.random.default_rng(3 + i).random(64)).any()
    assert not np.isin(draws[0], draws[1]).any()  # one stream per explorer
    for i in range(2):
        python = random.Random(3 + i)
        assert draws[i].tolist() == [python.random() for _ in range(16)]


def test_a_draw_stream_shows_values_before_taking_them_across_refills():
    import random

    stream, python = DrawStream(7), random.Random(7)
    expected = [python.random() for _ in range(4 * DrawStream.CHUNK)]
    assert stream.peek(5).tolist() == expected[:5] == stream.peek(5).tolist()
    stream.take(2)
    got = [stream.random()]  # the third value
    stream.peek(DrawStream.CHUNK + 10)  # past the first refill: the values shown are kept
    stream.take(DrawStream.CHUNK)
    got += stream.peek(2 * DrawStream.CHUNK).tolist()
    assert got == expected[2:3] + expected[3 + DrawStream.CHUNK : 3 + 3 * DrawStream.CHUNK]
    assert stream.taken == 3 + DrawStream.CHUNK


@pytest.mark.parametrize("deterministic", [True, False])
def test_open_loop_run_spends_the_budget_with_shared_solutions(deterministic):
    result = {}
    for replay_from in ("reset", "state"):
        result[replay_from] = run(
            GAME,
            num_envs=2,
            config=JerkConfig(
                EXPLOIT_BIAS=1.0, seed=3, replay_from=replay_from, deterministic=deterministic
            ),
            progress=False,
            pool_options={"max_episode_steps": 300},
            timesteps=1500,
            open_loop=True,
        )
        # Async: the budget exactly. A lock-step round needs a step of every env, so the
        # rounds stop short of the budget by less than num_envs steps (drive_lock_step).
        spent = result[replay_from]["timesteps"]
        assert 1500 - 2 < spent <= 1500 if deterministic else spent == 1500
        assert result[replay_from]["replay_path"] == replay_from
    reset, state = result["reset"], result["state"]
    # EXPLOIT_BIAS=1: once a solution exists every new episode exploits one, shared by both
    # explorers. From reset it replays the whole sequence; from a state (async_restore) the
    # episode starts where the sequence did best, with its return (the agent checks at every
    # episode end that the pool's best state is the end of its own best prefix).
    assert reset["replays"] >= reset["episodes"] - 2 > 0 and reset["restores"] == 0
    assert state["restores"] >= state["episodes"] - 2 > 0 and state["replays"] == 0
    assert reset["solutions"] >= 2 and state["solutions"] >= 2
    # A restored episode skips its prefix's steps (its return counts them), so more end
    # within the same budget.
    assert state["episodes"] > reset["episodes"]
    assert state["mean_episode_reward"] > 0 and reset["mean_episode_reward"] > 0


def test_open_loop_and_async_batches_together_raise():
    with pytest.raises(InvalidArgumentError, match="Expected open_loop or async_batches, not both"):
        run(GAME, num_envs=2, progress=False, timesteps=10, async_batches=True)
    with pytest.raises(InvalidArgumentError, match="the async-batches driver replays from reset"):
        run(
            GAME,
            num_envs=2,
            config=JerkConfig(replay_from="state"),
            progress=False,
            timesteps=10,
            open_loop=False,
            async_batches=True,
        )


def test_open_loop_and_per_step_jerk_play_the_same_run_of_one_seed():
    # The two drivers plan differently (a whole stretch at once, or one step at a time, and an
    # episode's end cuts a stretch short), but an explorer takes only the draws of the steps
    # that ran, where the original draws: one seed, one run, step for step, on the emulator,
    # with sticky frames, moves, back-offs, episode ends and replays.
    from fastretro.runtime.pool import VecRetroEnv

    options = dict(
        actions=jerk_actions(PROFILES[GAME]),
        observe=False,
        autoreset_mode="same_step",
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=300,
    )
    config = JerkConfig(EXPLOIT_BIAS=0.5, seed=9)
    budget, runs = 2500, []
    with VecRetroEnv(GAME, 1, **options) as env:
        agent = JerkAgent(None, env.action_space, config, horizon=300)
        env.reset(seed=9)
        for _ in range(budget):
            _, rewards, terminated, truncated, _ = env.step(agent.act(None))
            agent.observe(rewards, terminated, truncated)
        runs.append(agent)
    with VecRetroEnv(GAME, 1, batch_size=1, sequence_length=64, **options) as env:
        agent = JerkAgent(None, env.action_space, config, horizon=300)
        env.async_reset(seed=9)
        env.recv()
        ran = 0
        while ran < budget:
            actions, lengths = agent.plan(np.array([0]), np.array([min(64, budget - ran)]))
            env.send_sequences(actions, lengths, np.array([0]))
            _, _, terminated, truncated, infos = env.recv()
            steps = int(infos["sequence_steps"][0])
            agent.observe_sequences(
                [0], actions, infos["sequence_rewards"], [steps], terminated, truncated
            )
            ran += steps
        runs.append(agent)
    per_step, open_loop = runs
    assert per_step.episode_rewards == open_loop.episode_rewards
    assert per_step.episode_lengths == open_loop.episode_lengths
    assert len(per_step.episode_rewards) >= 8 and max(per_step.episode_rewards) > 0
    assert per_step.replays == open_loop.replays > 0
    assert per_step.streams[0].taken == open_loop.streams[0].taken
    for a, b in zip(per_step.solutions.sequences, open_loop.solutions.sequences, strict=True):
        np.testing.assert_array_equal(a, b)


def _original_jerk(seed: int, timesteps: int, max_episode_steps: int, exploit_bias: float):
    """bench/bench_jerk_parity.py's port of the original, in a fresh process: its JSON row."""
    import os

    bench = os.path.join(os.path.dirname(__file__), "..", "..", "bench")
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from bench_jerk_parity import original_jerk; "
        "print(json.dumps(original_jerk(sys.argv[2], *map(int, sys.argv[3:6]), "
        "float(sys.argv[6]))))"
    )
    args = [bench, GAME, timesteps, seed, max_episode_steps, exploit_bias]
    out = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_one_explorer_plays_the_originals_run_of_the_same_seed():
    # With its defaults (replay from reset, one explorer), fastretro's JERK draws what the
    # original draws where it draws them, on the same sticky frames: its run of a seed is the
    # original's run of that seed (the port on plain stable-retro), episode for episode. Short
    # episodes and frequent replays, so that a few thousand steps see explores and replays.
    original = _original_jerk(seed=3, timesteps=3000, max_episode_steps=300, exploit_bias=0.5)
    ours = run(
        GAME,
        config=JerkConfig(EXPLOIT_BIAS=0.5, seed=3),
        progress=False,
        pool_options={"max_episode_steps": 300},
        timesteps=3000,
    )
    assert ours["replay_path"] == "reset" and ours["timesteps"] == original["timesteps"]
    assert ours["episode_rewards"] == original["episode_rewards"]
    assert ours["episode_lengths"] == original["episode_steps"]
    kinds = "".join({"explore": "e", "replay": "p"}[kind] for kind in ours["episode_kinds"])
    assert kinds == original["episode_kinds"]
    assert kinds.count("e") >= 3 and kinds.count("p") >= 3 and max(ours["episode_rewards"]) > 0


@pytest.mark.parametrize("replay_from", ["state", "reset"])
def test_a_seeded_deterministic_run_repeats_bit_for_bit(replay_from):
    # Lock-step rounds, accounted for in env order, and one stream per explorer: the same seed
    # and options give the same episodes and the same solutions, however the workers are
    # scheduled. Two explorers share solutions; exploit episodes are frequent.
    def once(seed):
        return run(
            GAME,
            num_envs=2,
            config=JerkConfig(EXPLOIT_BIAS=0.5, seed=seed, replay_from=replay_from),
            progress=False,
            pool_options={"max_episode_steps": 300},
            timesteps=3000,
        )

    first, second = once(4), once(4)
    assert first["episodes"] >= 8 and first["replays"] + first["restores"] > 0
    for key in ("episode_rewards", "episode_lengths", "episode_kinds", "timesteps"):
        assert first[key] == second[key], key
    assert first["solutions"] == second["solutions"] >= 2
    assert first["solutions_crc32"] == second["solutions_crc32"]
    other = once(5)
    assert (other["episode_rewards"], other["solutions_crc32"]) != (
        first["episode_rewards"],
        first["solutions_crc32"],
    )


def test_make_pool_is_blind_with_the_profiles_actions_and_the_contests_timing():
    # The one JERK pool: `fastretro jerk` (run) and `fastretro profile --agent jerk` both use it.
    from fastretro.agents.jerk import contest_timing, make_pool

    assert contest_timing(GAME) == {"frameskip": 4, "sticky_prob": 0.25, "max_episode_steps": 4500}
    with make_pool(GAME, None, 2, batch_size=1, max_episode_steps=300) as env:
        assert env.batch_size == 1
        assert list(env.action_space.nvec) == [len(jerk_actions(PROFILES[GAME]))] * 2
    with pytest.raises(InvalidArgumentError, match=re.escape("No JERK profile for Pong-Nes-v0")):
        make_pool("Pong-Nes-v0")
