"""The DQN-era episode protocol in the workers: lost lives, no-op starts, FIRE, reward signs."""

import re

import numpy as np
import pytest

from fastretro import EnvConfig, InvalidArgumentError, VecRetroEnv
from fastretro.runtime.inprocess import InProcessEnv

ale_py = pytest.importorskip("ale_py", reason="the ALE backend needs ale-py (the [atari] extra)")

# Breakout's minimal action set: NOOP, FIRE, RIGHT, LEFT.
NOOP, FIRE = 0, 1


def _protocol_run(config, steps, actions, num_envs=2, seed=0):
    """Every step's (rewards, terminated, truncated, infos) under ``config``."""
    rows = []
    with VecRetroEnv(config, num_envs) as env:
        _, infos = env.reset(seed=seed)
        rows.append((None, None, None, infos))
        for t in range(steps):
            _, rewards, terminated, truncated, infos = env.step(actions(t))
            rows.append((rewards.copy(), terminated.copy(), truncated.copy(), infos))
    return rows


def test_lost_life_ends_the_training_episode_but_not_the_game():
    cfg = EnvConfig.dqn_atari("Breakout", sign_reward=False)
    rng = np.random.default_rng(0)
    rows = _protocol_run(cfg, 700, lambda t: rng.integers(0, 4, 2))
    lives_seen, ends, game_overs = {0: [5], 1: [5]}, 0, 0
    for _, terminated, _, infos in rows[1:]:
        for i in range(2):
            lives = int(infos["lives"][i])
            if terminated[i] and not infos["game_over"][i]:
                ends += 1
                # A lost life, with lives left.
                assert 0 < lives < lives_seen[i][-1]
            if infos["game_over"][i]:
                game_overs += 1
                assert terminated[i]
            lives_seen[i].append(lives)
    assert ends >= 4, "random play loses lives in 700 steps"
    assert game_overs >= 1


def test_the_game_goes_on_after_a_lost_life_and_restarts_after_game_over():
    # NEXT_STEP autoreset: the step after an end is the reset. After a lost life the score
    # and the remaining lives carry on; after a game over both start again.
    cfg = EnvConfig.dqn_atari("Breakout", sign_reward=False)
    rng = np.random.default_rng(1)
    rows = _protocol_run(cfg, 900, lambda t: rng.integers(0, 4, 2))
    continued = restarted = 0
    for (_, term, _, before), (_, _, _, after) in zip(rows[1:], rows[2:]):
        for i in range(2):
            if not term[i]:
                continue
            if before["game_over"][i]:
                assert after["lives"][i] == 5 and after["score"][i] == 0
                restarted += 1
            else:
                assert after["lives"][i] == before["lives"][i]
                assert after["score"][i] == before["score"][i]
                continued += 1
    assert continued >= 3 and restarted >= 1


def test_fire_reset_serves_the_ball_without_the_agent_pressing_fire():
    # Breakout's ball comes only after FIRE: with NOOPs alone, a life is lost only when the
    # reset pressed FIRE for the agent.
    def lives_lost(fire_reset):
        cfg = EnvConfig.dqn_atari("Breakout", fire_reset=fire_reset, noop_max=0)
        rows = _protocol_run(cfg, 120, lambda t: np.full(2, NOOP), num_envs=2)
        return sum(int(term.sum()) for _, term, _, _ in rows[1:])

    assert lives_lost(True) >= 2
    assert lives_lost(False) == 0


def _frames_after_reset(config, seed):
    env = InProcessEnv(config)
    try:
        env._stepper.set_rng(np.random.default_rng(seed))
        env.reset()
        return env.emulator._ale.getEpisodeFrameNumber()
    finally:
        env.close()


def test_noop_starts_run_one_to_noop_max_frames_drawn_from_the_env_seed():
    base = EnvConfig.envpool_atari("Breakout", fire_reset=False)
    start = _frames_after_reset(base.replace(noop_max=0), 0)
    counts = [_frames_after_reset(base, seed) - start for seed in range(12)]
    assert all(1 <= c <= 30 for c in counts), counts
    assert len(set(counts)) > 3, counts
    assert _frames_after_reset(base, 5) == _frames_after_reset(base, 5)
    with_fire = [_frames_after_reset(base.replace(fire_reset=True), s) - start for s in range(6)]
    # One frame fewer of no-ops, one FIRE frame: the same 1..30 frames in all.
    assert all(1 <= c <= 30 for c in with_fire), with_fire


def test_sign_reward_keeps_the_raw_reward_in_infos():
    cfg = EnvConfig.dqn_atari("Breakout", episodic_life=False)
    rng = np.random.default_rng(3)
    rows = _protocol_run(cfg, 600, lambda t: rng.integers(0, 4, 2))
    raw = np.concatenate([infos["reward"] for _, _, _, infos in rows[1:]])
    signed = np.concatenate([r for r, _, _, _ in rows[1:]])
    assert raw.max() >= 1, "random play breaks bricks"
    np.testing.assert_array_equal(signed, np.sign(raw))
    # Scaled, then signed: the info is still the game's own reward.
    rng = np.random.default_rng(3)
    rows = _protocol_run(
        cfg.replace(sign_reward=False, reward_scale=2.5), 600, lambda t: rng.integers(0, 4, 2)
    )
    raw = np.concatenate([infos["reward"] for _, _, _, infos in rows[1:]])
    scaled = np.concatenate([r for r, _, _, _ in rows[1:]])
    assert raw.max() >= 1
    np.testing.assert_array_equal(scaled, 2.5 * raw)


def test_reward_info_absent_when_the_reward_is_unchanged():
    cfg = EnvConfig.atari("Pong", frame_stack=1)
    rows = _protocol_run(cfg, 2, lambda t: np.zeros(2, np.int64))
    assert "reward" not in rows[-1][3] and "lives" not in rows[-1][3]


def test_episodic_life_on_stable_retro_reads_the_lives_variable():
    # Airstriker's data.json has ``lives``; stable-retro's backend reads it from RAM.
    cfg = EnvConfig(episodic_life=True, frameskip=4, observe=False, actions="discrete")
    with VecRetroEnv(cfg, 1) as env:
        _, infos = env.reset(seed=0)
        assert infos["lives"][0] > 0 and not infos["game_over"][0]


def test_episodic_life_without_lives_is_refused():
    cfg = EnvConfig.atari("Pong", episodic_life=True, backend="stable-retro")
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            "episodic_life needs the game's lives: Pong-Atari2600-v0 has no 'lives' variable in "
            "its data.json (the ALE backend counts lives for Atari games)"
        ),
    ):
        VecRetroEnv(cfg, 1)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("noop_max", -1, "Expected noop_max >= 0, got -1"),
        ("noop_max", 2.5, "Expected noop_max to be an int, got float"),
        ("noop_max", True, "Expected noop_max to be an int, got bool"),
    ],
)
def test_bad_protocol_options_name_themselves(field, value, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        EnvConfig(**{field: value})


def test_presets_say_what_they_reproduce():
    envpool = EnvConfig.envpool_atari("Breakout")
    assert (envpool.noop_max, envpool.fire_reset, envpool.episodic_life) == (30, True, False)
    assert (envpool.sticky_prob, envpool.actions, envpool.max_episode_steps) == (
        0.0,
        "ale_minimal",
        27_000,
    )
    dqn = EnvConfig.dqn_atari("Breakout")
    assert dqn.episodic_life and dqn.sign_reward and dqn.max_episode_steps == 100_000


def _play_until_life_lost(env, rng, limit=400):
    for _ in range(limit):
        _, _, term, _, infos = env.step(rng.integers(0, 4, env.num_envs))
        if term[0]:
            return infos
    raise AssertionError("no life lost")


def test_same_step_final_info_holds_the_ended_steps_protocol_infos():
    cfg = EnvConfig.dqn_atari("Breakout")
    rng = np.random.default_rng(2)
    ends = {"life": 0, "game": 0}
    with VecRetroEnv(cfg, 1, autoreset_mode="same_step") as env:
        env.reset(seed=0)
        lives = 5
        for _ in range(2000):
            _, reward, term, _, infos = env.step(rng.integers(0, 4, 1))
            assert infos["reward"][0] >= reward[0]  # the step's raw reward, not the reset's
            if not term[0]:
                lives = int(infos["lives"][0])
                continue
            final = infos["final_info"]
            game_over = bool(final["game_over"][0])
            ends["game" if game_over else "life"] += 1
            if game_over:
                assert infos["lives"][0] == 5 and not infos["game_over"][0]
            else:
                assert final["lives"][0] == lives - 1 == infos["lives"][0]
            lives = int(infos["lives"][0])
            if ends["game"]:
                break
    assert ends["life"] >= 4 and ends["game"] == 1


def test_a_masked_reset_goes_on_with_the_game_and_a_plain_reset_starts_a_new_one():
    cfg = EnvConfig.dqn_atari("Breakout")
    rng = np.random.default_rng(4)
    with VecRetroEnv(cfg, 1, autoreset_mode="disabled") as env:
        env.reset(seed=0)
        infos = _play_until_life_lost(env, rng)
        assert infos["lives"][0] == 4 and not infos["game_over"][0]
        _, infos = env.reset(options={"reset_mask": np.array([True])})
        assert infos["lives"][0] == 4, "the next episode of the same game"
        _play_until_life_lost(env, rng)
        _, infos = env.reset()
        assert infos["lives"][0] == 5, "a new game"


def _games_by_hand(config, mode, steps, seed=5):
    """Episode entries from the pool, and each whole game's raw return counted by hand."""
    rng = np.random.default_rng(seed)
    entries, games, ret, length = [], [], 0.0, 0
    resetting = False
    with VecRetroEnv(config.replace(episode_statistics=True), 1, autoreset_mode=mode) as env:
        env.reset(seed=0)
        for _ in range(steps):
            _, _, term, trunc, infos = env.step(rng.integers(0, 4, 1))
            ended_info = infos.get("final_info", {}) if mode == "same_step" else infos
            if not resetting:
                ret += infos["reward"][0]
                length += 1
            done = bool(term[0] or trunc[0])
            game_over = bool(ended_info["game_over"][0]) if done else False
            if "episode" in ended_info:
                assert ended_info["_episode"][0]
                entries.append((ended_info["episode"]["r"][0], ended_info["episode"]["l"][0]))
            if done and (game_over or trunc[0]):
                games.append((ret, length))
                ret, length = 0.0, 0
            resetting = done and mode == "next_step"
    return entries, games


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_episode_statistics_report_whole_games_with_raw_scores(mode):
    cfg = EnvConfig.dqn_atari("Breakout", noop_max=0)
    entries, games = _games_by_hand(cfg, mode, 1500)
    assert len(games) >= 2
    assert entries == games


def test_episode_statistics_need_their_option():
    rows = _protocol_run(EnvConfig.dqn_atari("Breakout"), 300, lambda t: np.full(2, FIRE))
    assert not any("episode" in infos for *_, infos in rows)


def test_episode_statistics_agree_between_lock_step_and_async_mode():
    cfg = EnvConfig.dqn_atari("Breakout", noop_max=0, episode_statistics=True)
    actions = np.random.default_rng(6).integers(0, 4, 1200)

    def entries(env, step):
        out = []
        for a in actions:
            infos = step(env, a)
            if "episode" in infos:
                out.append((infos["episode"]["r"][0], infos["episode"]["l"][0]))
        return out

    with VecRetroEnv(cfg, 1) as env:
        env.reset(seed=0)
        lock_step = entries(env, lambda e, a: e.step(np.array([a]))[4])
    with VecRetroEnv(cfg, 1, batch_size=1) as env:
        env.async_reset(seed=0)
        env.recv()

        def step(e, a):
            e.send(np.array([a]), [0])
            return e.recv()[4]

        in_async = entries(env, step)
    assert len(lock_step) >= 1 and in_async == lock_step
