"""VecRetroEnv: gymnasium interface, bit-exactness against plain stable-retro, autoreset."""

from __future__ import annotations

import logging

import gymnasium
import numpy as np
import pytest
from conftest import GAME
from gymnasium.vector import AutoresetMode
from reference import plain_rollout

from fastretro import VecRetroEnv


def random_actions(steps, num_envs, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (steps, num_envs, 12), dtype=np.uint8)


@pytest.fixture
def env4():
    env = VecRetroEnv(GAME, 4, seed=0)
    yield env
    env.close()


def test_spaces_and_shapes(env4):
    assert isinstance(env4, gymnasium.vector.VectorEnv)
    assert env4.num_envs == 4
    assert env4.single_observation_space.shape == (224, 320, 3)
    assert env4.observation_space.shape == (4, 224, 320, 3)
    assert env4.single_action_space == gymnasium.spaces.MultiBinary(12)
    assert env4.action_space.shape == (4, 12)
    assert env4.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, infos = env4.reset()
    assert obs.shape == (4, 224, 320, 3) and obs.dtype == np.uint8
    assert env4.observation_space.contains(obs)
    obs, rew, term, trunc, infos = env4.step(env4.action_space.sample())
    assert rew.shape == (4,) and rew.dtype == np.float64
    assert term.dtype == bool and trunc.dtype == bool
    assert set(infos) == {"gameover", "_gameover", "lives", "_lives", "score", "_score"}
    assert infos["lives"].shape == (4,) and infos["_lives"].all()


def test_observation_is_a_read_only_view_that_the_next_step_overwrites(env4):
    obs, _ = env4.reset()
    with pytest.raises(ValueError, match="read-only"):
        obs[0, 0, 0, 0] = 1
    before = obs.copy()
    acts = random_actions(60, 4)
    for a in acts:
        obs2, *_ = env4.step(a)
    assert obs2 is obs or np.shares_memory(obs2, obs)
    assert not np.array_equal(before, obs)  # the view followed the shared buffer


def test_copy_true_returns_independent_arrays():
    with VecRetroEnv(GAME, 2, copy=True) as env:
        obs, _ = env.reset()
        obs2, *_ = env.step(np.ones((2, 12), np.uint8))
        assert not np.shares_memory(obs, obs2)
        obs[...] = 0  # writable, and ours


@pytest.mark.parametrize(
    "frameskip, sticky_prob, max_pool, per_frame",
    # Evaluated once per step, the frames before the observed ones run without drawing
    # (fastretro/runtime/headless.py); per frame, every frame is drawn.
    [
        (1, 0.0, False, True),
        (4, 0.25, False, True),
        (4, 0.25, True, True),
        (4, 0.25, False, False),
        (4, 0.25, True, False),
    ],
)
def test_bit_identical_to_plain_stable_retro(frameskip, sticky_prob, max_pool, per_frame):
    steps, n, seed = 120, 2, 7
    acts = random_actions(steps, n, seed=1)
    with VecRetroEnv(
        GAME,
        n,
        frameskip=frameskip,
        sticky_prob=sticky_prob,
        max_pool=max_pool,
        per_frame_reward=per_frame,
    ) as env:
        obs, _ = env.reset(seed=seed)
        got_obs, got_rew = [obs.copy()], []
        for a in acts:
            obs, rew, term, trunc, _ = env.step(a)
            assert not (term.any() or trunc.any())
            got_obs.append(obs.copy())
            got_rew.append(rew.copy())
    got_obs, got_rew = np.stack(got_obs, 1), np.stack(got_rew, 1)
    for i in range(n):
        ref_obs, ref_rew, _ = plain_rollout(
            GAME, acts[:, i], frameskip, sticky_prob, seed=seed + i, max_pool=max_pool
        )
        np.testing.assert_array_equal(got_obs[i], ref_obs)
        np.testing.assert_array_equal(got_rew[i], ref_rew)


def test_reward_read_once_per_step_equals_per_frame_sum():
    acts = random_actions(400, 2, seed=3)
    results = []
    for per_frame in (True, False):
        with VecRetroEnv(GAME, 2, frameskip=4, per_frame_reward=per_frame) as env:
            env.reset(seed=0)
            results.append(np.array([env.step(a)[1] for a in acts]))
    assert results[0].sum() > 0, "the rollout should score, or the comparison proves nothing"
    np.testing.assert_array_equal(results[0], results[1])


def test_same_seed_same_rollout_and_sticky_depends_on_seed():
    acts = random_actions(80, 2, seed=5)

    def run(seed):
        with VecRetroEnv(GAME, 2, frameskip=4, sticky_prob=0.25) as env:
            env.reset(seed=seed)
            return np.stack([env.step(a)[0].copy() for a in acts])

    a, b, c = run(11), run(11), run(12)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_per_env_games_and_states():
    with VecRetroEnv([GAME, GAME], 2, state=["Level1", None], scenario=[None, "scenario"]) as env:
        obs, _ = env.reset()
        np.testing.assert_array_equal(obs[0], obs[1])  # Level1 is the default state


def test_truncation_and_next_step_autoreset():
    with VecRetroEnv(GAME, 2, max_episode_steps=3) as env:
        first, _ = env.reset()
        first = first.copy()
        acts = np.zeros((2, 12), np.uint8)
        for _ in range(2):
            _, _, _, trunc, _ = env.step(acts)
            assert not trunc.any()
        _, _, term, trunc, _ = env.step(acts)
        assert trunc.all() and not term.any()
        obs, rew, term, trunc, _ = env.step(acts)  # the autoreset step
        assert not trunc.any() and not term.any() and (rew == 0).all()
        np.testing.assert_array_equal(obs, first)


def test_same_step_autoreset_reports_final_obs_and_info():
    with VecRetroEnv(GAME, 2, max_episode_steps=2, autoreset_mode="same_step") as env:
        assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        first, _ = env.reset()
        first = first.copy()
        acts = np.ones((2, 12), np.uint8)
        _, _, _, trunc, infos = env.step(acts)
        assert "final_obs" not in infos
        before_end = env.step(acts)
        obs, _, _, trunc, infos = before_end
        assert trunc.all()
        np.testing.assert_array_equal(obs, first)  # already reset
        assert infos["_final_obs"].all() and infos["_final_info"].all()
        assert infos["final_obs"][0].shape == (224, 320, 3)
        assert not np.array_equal(infos["final_obs"][0], first[0])
        assert infos["final_info"]["lives"].shape == (2,)


def test_disabled_autoreset_needs_reset_mask():
    with VecRetroEnv(GAME, 2, max_episode_steps=1, autoreset_mode=AutoresetMode.DISABLED) as env:
        env.reset()
        acts = np.zeros((2, 12), np.uint8)
        _, _, _, trunc, _ = env.step(acts)
        assert trunc.all()
        with pytest.raises(RuntimeError, match=r"Envs \[0, 1\] ended their episode"):
            env.step(acts)
        env.reset(options={"reset_mask": np.array([True, False])})
        with pytest.raises(RuntimeError, match=r"Envs \[1\] ended their episode"):
            env.step(acts)
        env.reset(options={"reset_mask": np.array([False, True])})
        env.step(acts)


def test_step_async_and_step_wait_baselines_shape(env4):
    env4.reset()
    env4.step_async(np.zeros((4, 12), np.uint8))
    obs, rew, term, trunc, infos = env4.step_wait(timeout=30)
    assert obs.shape[0] == 4 and rew.shape == (4,)


def test_worker_logs_reach_parent_handlers(caplog):
    caplog.set_level(logging.DEBUG, logger="fastretro")
    with VecRetroEnv(GAME, 1) as env:
        env.reset()
    # The receiver thread forwards records asynchronously: give it a moment.
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "worker 0 serving" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.05)
    assert any(
        r.name == "fastretro.runtime.worker" and "worker 0 serving" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_start_methods(start_method):
    with VecRetroEnv(GAME, 2, start_method=start_method) as env:
        env.reset(seed=0)
        obs, *_ = env.step(np.zeros((2, 12), np.uint8))
        assert obs.shape == (2, 224, 320, 3)


def test_the_parent_stops_spinning_while_its_spins_miss_and_resumes_on_a_hit():
    from fastretro.runtime.supervisor import PARENT_SPIN_MAX_S, SPIN_SKIP_MAX, SpinBackoff

    spin, misses = SpinBackoff(), 0
    assert spin.budget(misses, 1e-3) == pytest.approx(1.5e-3)  # 1.5x the recent waits
    assert spin.budget(misses, 1.0) == PARENT_SPIN_MAX_S  # capped
    # Another process holds the core: every spin misses, and the gaps grow 1, 3, 7, ...
    spun = []
    for _ in range(200):
        budget = spin.budget(misses, 1e-3)
        spun.append(budget > 0)
        misses += budget > 0
    gaps = np.diff(np.flatnonzero(spun)) - 1
    assert gaps[:5].tolist() == [1, 3, 7, 15, 31]
    for _ in range(5000):
        misses += spin.budget(misses, 1e-3) > 0
    assert spin.skip == SPIN_SKIP_MAX
    # The core is free again: the next spin hits, and the parent spins every batch.
    while spin.budget(misses, 1e-3) == 0:
        pass
    assert all(spin.budget(misses, 1e-3) > 0 for _ in range(10)) and spin.skip == 0


def test_spinning_only_where_the_spinner_has_a_core():
    from fastretro.runtime.stats import available_cores

    cores = available_cores()
    for n, per_worker in ((1, 1), (cores, 1), (2 * cores, 1), (2 * cores, 2)):
        with VecRetroEnv(GAME, n, observe=False, envs_per_worker=per_worker) as env:
            # The parent spins beside a core per worker; the workers wherever each has a core
            # (they yield while they watch).
            workers = len(env._workers.procs)
            assert workers == n // per_worker
            assert env.spins == (workers + 1 <= cores), n
            assert env.workers_spin == (workers <= cores), n
    with VecRetroEnv(GAME, 2 * cores, observe=False, spin=True) as env:
        assert env.spins and env.workers_spin  # asked for
        env.reset(seed=0)
        env.step(np.zeros((2 * cores, 12), np.uint8))
    with VecRetroEnv(GAME, 1, observe=False, spin=False) as env:
        assert not env.spins and not env.workers_spin


def test_stats_break_the_pools_overhead_down():
    with VecRetroEnv(GAME, 2, frameskip=2) as env:
        env.reset(seed=0)
        env.reset_stats()
        for _ in range(30):
            env.step(np.zeros((2, 12), np.uint8))
        st = env.stats()
    assert st.batches == 30 and st.wakeups.sum() == 60
    parts = st.overhead()
    assert set(parts) == {"stage", "wake", "collect", "wake_latency", "scheduling"}
    assert all(v >= 0 for v in parts.values()) and parts["wake_latency"] > 0
