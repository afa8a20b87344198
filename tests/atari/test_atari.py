"""Atari 2600 on the pool: every feature on Pong and Breakout, on ALE's emulator and stable-retro's.

ALE's backend needs ale-py (a test extra, which ships the ROMs); the stable-retro backend needs
those ROMs imported into stable-retro (``fastretro roms --from-ale``, as CI does).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ale_py", reason='ale-py is the atari extra: pip install "fastretro[atari]"')

from fastretro import EnvConfig, VecRetroEnv, atari_env  # noqa: E402
from fastretro.errors import GameNotFoundError, InvalidArgumentError  # noqa: E402
from fastretro.runtime.games import atari_game, game_id, rom_imported  # noqa: E402
from fastretro.runtime.kernels import rgb_to_gray_into  # noqa: E402

GAMES = ["Pong-Atari2600-v0", "Breakout-Atari2600-v0"]
BACKENDS = ["ale", "stable-retro"]


def needs_rom(game, backend):
    if backend == "stable-retro" and not rom_imported(game):
        pytest.skip(f"{game}'s ROM is not imported into stable-retro: fastretro roms --from-ale")


def rollout(env, steps, seed=0):
    """Random actions for ``steps`` steps; (actions, rewards, ends, infos per step)."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        a = rng.integers(0, env.single_action_space.n, env.num_envs)
        obs, rew, term, trunc, infos = env.step(a)
        out.append(
            (a, rew.copy(), term.copy(), trunc.copy(), {k: np.copy(v) for k, v in infos.items()})
        )
    return out


# -- the preset and the game names ----------------------------------------------------------


def test_the_atari_preset_is_the_standard_protocol():
    config = EnvConfig.atari("Pong")
    assert config.game == "Pong-Atari2600-v0"
    assert (config.frameskip, config.sticky_prob, config.max_episode_steps) == (4, 0.25, 27_000)
    assert (config.max_pool, config.grayscale, config.resize, config.frame_stack) == (
        True,
        True,
        (84, 84),
        4,
    )
    assert config.actions == "ale_full" and config.channels_first
    assert EnvConfig.atari("pong", frame_stack=1).frame_stack == 1  # any field overrides


def test_atari_game_names():
    assert atari_game("Pong") == atari_game("pong") == atari_game("Pong-Atari2600-v0")
    assert atari_game("montezuma_revenge") == "MontezumaRevenge-Atari2600-v0"
    with pytest.raises(GameNotFoundError, match=re.escape("Unknown Atari 2600 game 'Pongg'")):
        atari_game("Pongg")


def test_command_lines_take_short_atari_names_and_pass_other_names_on():
    assert game_id("Pong") == game_id("Pong-Atari2600-v0") == "Pong-Atari2600-v0"
    assert game_id("Airstriker-Genesis-v0") == "Airstriker-Genesis-v0"
    assert game_id("Pongg") == "Pongg"  # the env then says it is unknown, with close names


def test_the_default_backend_is_ale_and_the_pool_says_why():
    with atari_env("Breakout", 3) as env:
        assert env.backends == ("ale",) * 3 and env.backend_why == "ALE runs every env's game"
        assert env.pool_config.envs_per_worker == 2  # a worker per core: 2 + 1 on 2 cores
        assert env.single_observation_space.shape == (4, 84, 84)
        assert env.single_action_space.n == 18
    with VecRetroEnv(EnvConfig.atari("Pong", backend="stable-retro"), 1) as env:
        assert env.backends == ("stable-retro",)


def test_what_ale_cannot_run_falls_back_to_stable_retro_or_is_refused(tmp_path):
    needs_rom("Pong-Atari2600-v0", "stable-retro")
    with VecRetroEnv(EnvConfig.atari("Pong", record=str(tmp_path)), 1) as env:
        assert env.backends == ("stable-retro",)
        assert "records .bk2 movies" in env.backend_why
    with pytest.raises(InvalidArgumentError, match=re.escape("Cannot run on ALE: ALE does not")):
        VecRetroEnv("Airstriker-Genesis-v0", 1, backend="ale")
    with pytest.raises(InvalidArgumentError, match=re.escape("Cannot run on ALE: a save state")):
        VecRetroEnv(EnvConfig.atari("Pong", state="Start", backend="ale"), 1)
    with pytest.raises(InvalidArgumentError, match=re.escape("stable-retro backend (its")):
        VecRetroEnv(EnvConfig.atari("Pong", backend="stable-retro"), 2, envs_per_worker=2)


# -- rewards, ends and variables mean the same on both backends -----------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_pong_rewards_player_ones_points_minus_the_opponents(backend):
    # Pong's scenario rewards each player: player 1's reward is +1 when score2 rises (the
    # paddle its joystick moves scores; ALE's own reward) and -1 when score1 rises.
    needs_rom("Pong-Atari2600-v0", backend)
    config = EnvConfig.atari("Pong", backend=backend, frameskip=8, max_episode_steps=None)
    with VecRetroEnv(config, 2) as env:
        steps = rollout(env, 400)
    points = 0
    for (_, _, term, trunc, before), (_, rew, _, _, after) in zip(steps, steps[1:]):
        new_episode = term | trunc  # the next step is the autoreset
        gained = (after["score2"] - before["score2"]) - (after["score1"] - before["score1"])
        np.testing.assert_array_equal(
            np.where(new_episode, 0, gained), np.where(new_episode, 0, rew)
        )
        points += int(np.abs(rew).sum())
    assert points > 10  # the random paddle loses points, and wins some


@pytest.mark.parametrize("backend", BACKENDS)
def test_breakout_rewards_the_score_and_ends_with_the_last_life(backend):
    needs_rom("Breakout-Atari2600-v0", backend)
    config = EnvConfig.atari("Breakout", backend=backend, frameskip=8, actions="ale_minimal")
    with VecRetroEnv(config, 2, autoreset_mode="same_step") as env:
        env.reset(seed=1)
        rng = np.random.default_rng(1)
        returns, ended = np.zeros(2), []
        for _ in range(3000):
            _, rew, term, trunc, infos = env.step(rng.integers(0, 4, 2))
            returns += rew
            for i in np.flatnonzero(term):
                final = infos["final_info"]
                ended.append((returns[i], final["score"][i], final["lives"][i]))
                returns[i] = 0
            if len(ended) >= 2:
                break
    assert len(ended) >= 2
    for ret, score, lives in ended:
        assert ret == score and lives == 0  # the return is the score; the end the last life


# -- every pool feature on ALE -------------------------------------------------------------


@pytest.mark.parametrize("game", GAMES)
def test_async_envs_see_what_lock_step_envs_see(game):
    # Sticky 0: each env's observations and rewards depend on its own actions only.
    config = EnvConfig.atari(game, sticky_prob=0.0)
    acts = np.random.default_rng(3).integers(0, 18, (30, 4))
    with VecRetroEnv(config, 4, copy=True) as lock:
        lock.reset(seed=0)
        expected = [lock.step(a)[:2] for a in acts]
    with VecRetroEnv(config, 4, batch_size=2) as env:
        env.async_reset(seed=0)
        sent = np.zeros(4, int)  # steps sent to each env
        seen = {i: [] for i in range(4)}
        while min(len(s) for s in seen.values()) < 30:
            obs, rew, _, _, infos = env.recv()
            ids = infos["env_id"]
            for j, i in enumerate(ids):
                if sent[i] > 0:  # the result of a step (the first recv is the reset)
                    seen[i].append((obs[j], rew[j]))
            env.send(np.array([acts[min(sent[i], 29), i] for i in ids]), ids)
            sent[ids] += 1
        for i in range(4):
            for t, (o, r) in enumerate(seen[i][:30]):
                np.testing.assert_array_equal(o, expected[t][0][i], err_msg=f"env {i} step {t}")
                assert r == expected[t][1][i]


def test_sequences_run_in_the_worker_as_steps_do():
    config = EnvConfig.atari("Breakout", observe=False, sequence_length=16, sticky_prob=0.0)
    acts = np.random.default_rng(4).integers(0, 18, (3, 16))
    with VecRetroEnv(config, 3) as seq, VecRetroEnv(config.replace(sequence_length=0), 3) as one:
        seq.reset(seed=0)
        one.reset(seed=0)
        _, total, _, _, infos = seq.step_sequences(acts, np.full(3, 16))
        rewards = [one.step(acts[:, t])[1] for t in range(16)]
        np.testing.assert_array_equal(infos["sequence_rewards"], np.array(rewards).T)
        np.testing.assert_array_equal(total, np.sum(rewards, axis=0))


def test_snapshots_restore_where_the_episode_did_best():
    # ALE's save states carry its RNG: the next steps are exactly those after the best point.
    config = EnvConfig.atari(
        "Breakout", snapshot_best=True, sticky_prob=0.0, max_episode_steps=300, frameskip=4
    )
    acts = np.random.default_rng(5).integers(0, 4, 300)
    with VecRetroEnv(config.replace(actions="ale_minimal"), 2, copy=True) as env:
        env.reset(seed=0)
        for t in range(300):
            _, _, term, trunc, _ = env.step(np.array([acts[t], 0]))
            if term[0] or trunc[0]:
                break
        snap = env.best_snapshot(0)
        assert snap.episode_return > 0 and snap.screen.shape == (210, 160, 3)
        # Env 1 loads it; env 0 replays the prefix from reset: the same next 20 steps.
        env.reset(seed=0)
        for t in range(snap.episode_step):
            env.step(np.array([acts[t], 0]))
        env.restore({1: snap})
        for t in range(snap.episode_step, snap.episode_step + 20):
            obs, rew, *_ = env.step(np.array([acts[t], acts[t]]))
            # The newest frame (a restored stack starts filled with the snapshot's screen).
            np.testing.assert_array_equal(obs[0, -1], obs[1, -1])
            assert rew[0] == rew[1]


def test_a_killed_worker_is_replaced_with_all_its_envs():
    with atari_env("Pong", 4, on_worker_failure="restart", observe=False) as env:
        env.reset(seed=0)
        victim = env._workers.procs[1]  # runs envs 2 and 3
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(5)
        _, _, _, trunc, infos = env.step(np.zeros(4, np.int64))
        assert trunc.tolist() == [False, False, True, True]
        assert infos["worker_restarted"].tolist() == [False, False, True, True]
        env.step(np.zeros(4, np.int64))
        assert env.worker_restarts == 1


# -- observations: 210x160 frames, ALE's gray = the luma of its RGB -------------------------


@pytest.mark.parametrize("game", GAMES)
def test_gray_from_ales_own_picture_is_the_luma_of_its_rgb(game):
    base = dict(frameskip=1, sticky_prob=0.0, max_pool=False, resize=None, frame_stack=1)
    rgb_config = EnvConfig.atari(game, **base, grayscale=False, channels_first=False)
    acts = np.random.default_rng(6).integers(0, 18, (40, 2))
    with (
        VecRetroEnv(rgb_config, 2, copy=True) as rgb,
        VecRetroEnv(rgb_config.replace(grayscale=True), 2, copy=True) as gray,
    ):
        assert rgb.single_observation_space.shape == (210, 160, 3)
        assert gray.single_observation_space.shape == (210, 160, 1)
        for o in (rgb.reset(seed=0)[0], gray.reset(seed=0)[0]):
            assert o.shape[1:3] == (210, 160)
        for a in acts:
            frame, g = rgb.step(a)[0], gray.step(a)[0]
            for i in range(2):
                luma = np.empty((210, 160), np.uint8)
                rgb_to_gray_into(frame[i], luma)
                np.testing.assert_array_equal(g[i, ..., 0], luma)


@pytest.mark.parametrize("game", GAMES)
def test_observations_from_ales_colour_codes_are_those_from_its_gray(game, monkeypatch):
    # The standard protocol (4 frames, max-pool, 84x84 gray, stack 4) by the worker's own code,
    # in this process: once from the colour codes with the palette (the default), once from
    # ALE's own gray picture (no palette found); the observations must be the same bytes.
    from fastretro.runtime.backends.ale import AleEmulator
    from fastretro.runtime.inprocess import InProcessEnv

    config = EnvConfig.atari(game, sticky_prob=0.0)
    acts = np.random.default_rng(8).integers(0, 18, 120)
    seen = []
    for palette in (True, False):
        if not palette:
            monkeypatch.setattr(AleEmulator, "_find_gray_palette", lambda self: None)
        env = InProcessEnv(config)
        uses_codes = env.emulator.gray_palette is not None
        assert uses_codes == palette
        env.reset()
        frames = []
        for a in acts:
            env.step(np.array([a]))
            frames.append(env.arrays["obs"][0].copy())
        env.close()
        seen.append(np.stack(frames))
    assert seen[0].std() > 0  # the frames show the game
    np.testing.assert_array_equal(seen[0], seen[1])


def test_the_pool_says_which_picture_observations_come_from():
    with atari_env("Pong", 2) as env:
        assert env.observes_from == ("screen_codes", "screen_codes")
    rgb = EnvConfig.atari("Pong", grayscale=False, resize=None, max_pool=False, frame_stack=1)
    with VecRetroEnv(rgb, 1) as env:
        assert env.observes_from == ("screen",)
    with VecRetroEnv(EnvConfig.atari("Pong", observe=False), 1) as env:
        assert env.observes_from == ("",)


def test_gray_observations_come_from_ales_colour_codes():
    from fastretro.runtime.backends.ale import AleEmulator
    from fastretro.runtime.worker import observation_picture

    em = AleEmulator("Pong-Atari2600-v0")
    picture, palette = observation_picture(em, grayscale=True)
    assert picture == em.screen_codes and palette is em.gray_palette
    assert observation_picture(em, grayscale=False) == (em.screen, None)
    em.gray_palette = None  # a frame that could not tell the palettes apart
    assert observation_picture(em, grayscale=True) == (em.screen_gray, None)


def test_a_game_of_250_rows_runs_under_the_standard_protocol():
    with atari_env("Adventure", 2) as env:
        obs, _ = env.reset(seed=0)
        assert obs.shape[0] == 2 and obs.shape[-2:] == (84, 84)
        for _ in range(5):
            obs = env.step(np.zeros(2, np.int64))[0]
        assert obs.std() > 0


# -- action sets on both backends ----------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("actions", "sizes"),
    [("filtered", (8, 8)), ("discrete", (18, 18)), ("ale_full", (18, 18)), ("ale_minimal", (6, 4))],
)
def test_action_sets(backend, actions, sizes):
    for game, size in zip(GAMES, sizes):
        needs_rom(game, backend)
        config = EnvConfig.atari(game, backend=backend, actions=actions, observe=False)
        with VecRetroEnv(config, 1) as env:
            space = env.single_action_space
            assert (space.n if hasattr(space, "n") else space.shape[0]) == size
            env.reset(seed=0)
            env.step(env.action_space.sample())


def test_ale_action_sets_need_an_atari_game():
    with pytest.raises(InvalidArgumentError, match=re.escape("is ALE's action set, for Atari")):
        VecRetroEnv("Airstriker-Genesis-v0", 1, actions="ale_full")


# -- the tools on Atari ----------------------------------------------------------------------


def test_jerk_runs_on_an_atari_game_with_the_generic_profile():
    from fastretro.agents.jerk import run

    result = run("Breakout-Atari2600-v0", num_envs=2, timesteps=600)
    assert result["timesteps"] >= 600 and result["episodes"] >= 0


def test_ppo2_trains_with_the_atari_preset(tmp_path):
    pytest.importorskip("torch", reason="torch is a test extra")
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "ppo", "--preset", "atari", "--game", "Pong",
         "--num-envs", "2", "--n-steps", "16", "--n-minibatches", "2", "--total-frames", "256",
         "--run-dir", str(tmp_path), "--quiet", "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["frames"] >= 256


def test_rainbow_trains_on_an_atari_game_named_short(tmp_path):
    pytest.importorskip("torch", reason="torch is a test extra")
    from fastretro.agents import rainbow

    code = rainbow.main(
        ["--game", "Pong", "--actions", "ale_minimal", "--num-envs", "2", "--total-frames", "160",
         "--buffer-size", "512", "--learning-starts", "20", "--batch-size", "4",
         "--run-dir", str(tmp_path), "--quiet"]
    )  # fmt: skip
    assert code == 0
    ckpt = rainbow.load_checkpoint(str(tmp_path / "checkpoints" / "last.pt"))
    assert ckpt["config"]["game"] == "Pong-Atari2600-v0"


def test_eval_records_movies_that_replay_to_the_same_reward(tmp_path):
    needs_rom("Pong-Atari2600-v0", "stable-retro")
    from fastretro.contest.evaluate import RandomAgent, evaluate
    from fastretro.contest.movies import replay

    score = evaluate(
        RandomAgent,
        [("Pong-Atari2600-v0", None)],
        str(tmp_path),
        timesteps=300,
        max_episode_steps=100,
        progress=False,
    )
    movies = sorted((tmp_path / "Pong-Atari2600-v0-default" / "bk2").glob("*.bk2"))
    assert len(movies) >= 3 and score["levels"]
    monitor = (tmp_path / "Pong-Atari2600-v0-default" / "monitor.csv").read_text().splitlines()
    first = float(monitor[2].split(",")[0])
    assert replay(str(movies[0]))["reward"] == first


def test_profile_runs_an_agent_on_ale():
    from fastretro.tools.profiler import run_agent

    stats, _, wall = run_agent("random", "Pong-Atari2600-v0", None, 2, 2.0)
    assert stats.frames.sum() > 0 and wall > 0
