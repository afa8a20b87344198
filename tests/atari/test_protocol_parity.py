"""The DQN-era protocol against the originals: gymnasium's AtariPreprocessing and EnvPool.

With sticky actions off and the no-op starts pinned, one fixed action sequence gives the same
rewards, lives, ends and observations (within 1 per pixel) on fastretro's ALE backend as on
``AtariPreprocessing`` over ``ALE/<Game>-v5`` at one frame a step, and as on EnvPool.

What differs, and is left out of the comparisons below:
- The observation of the step where the game ends. fastretro's worker runs no frame after
  ALE's game over; AtariPreprocessing and EnvPool end their frame skip there too but max-pool
  different buffers. Measured with these sequences: Breakout, 3 pixels differ from both (by up
  to 58); Pong, fastretro equals EnvPool and both differ from AtariPreprocessing (by up to 142).
- EnvPool cannot run without no-op starts (``noop_max=0`` crashes EnvPool 1.2.5), so against
  it both run exactly one no-op frame at each reset (``noop_max=1``).
- AtariPreprocessing restarts the game at every reset, so ``terminal_on_life_loss=True`` there
  is not EnvPool's or SB3's episodic life: the reference plays the whole game
  (``terminal_on_life_loss=False``) and a lost life is read from its ``lives``.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py", reason='the reference is ale-py\'s ALE: pip install ".[atari]"')

import gymnasium as gym  # noqa: E402

from fastretro import EnvConfig, VecRetroEnv  # noqa: E402

GAMES = {"Pong": 6, "Breakout": 4}  # each game's minimal action set size
MAX_STEPS = 3000  # a game of random actions ends well within (Pong ~950 steps, Breakout ~250)


def actions(game: str) -> np.ndarray:
    return np.random.default_rng(0).integers(0, GAMES[game], MAX_STEPS)


def fastretro_pool(game: str, noop_max: int, autoreset_mode: str) -> VecRetroEnv:
    config = EnvConfig.dqn_atari(
        game, noop_max=noop_max, fire_reset=False, sign_reward=False, frame_stack=1, backend="ale"
    )
    return VecRetroEnv(config, 1, autoreset_mode=autoreset_mode)


@pytest.mark.parametrize("game", sorted(GAMES))
def test_dqn_protocol_matches_gymnasium_atari_preprocessing(game):
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing

    gym.register_envs(ale_py)
    ref = AtariPreprocessing(
        gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0),
        noop_max=0,
        frame_skip=4,
        screen_size=84,
        terminal_on_life_loss=False,
    )
    pool = fastretro_pool(game, noop_max=0, autoreset_mode="same_step")
    try:
        ref_obs, ref_info = ref.reset(seed=0)
        obs, infos = pool.reset(seed=0)
        np.testing.assert_allclose(obs[0, 0], ref_obs, atol=1)
        lives = ref_info["lives"]
        assert infos["lives"][0] == lives
        for t, action in enumerate(actions(game)):
            ref_obs, ref_reward, game_over, _, ref_info = ref.step(action)
            obs, rewards, terminated, truncated, infos = pool.step(np.array([action]))
            life_lost = 0 < ref_info["lives"] < lives
            lives = ref_info["lives"]
            assert rewards[0] == ref_reward, f"step {t}"
            assert terminated[0] == (game_over or life_lost), f"step {t}"
            assert not truncated[0]
            if game_over:
                break
            # Going on after a lost life runs no frame: the next episode starts on this one.
            seen = infos["final_obs"][0] if terminated[0] else obs[0]
            np.testing.assert_allclose(seen[0], ref_obs, atol=1, err_msg=f"step {t}")
            assert infos["lives"][0] == lives, f"step {t}"
        assert game_over, f"{game} did not end within {MAX_STEPS} steps"
    finally:
        pool.close()
        ref.close()


@pytest.mark.parametrize("game", sorted(GAMES))
def test_dqn_protocol_matches_envpool(game):
    envpool = pytest.importorskip("envpool", reason='EnvPool is a peer: pip install ".[peers]"')
    ref = envpool.make(
        f"{game}-v5",
        env_type="gymnasium",
        num_envs=1,
        seed=0,
        noop_max=1,
        repeat_action_probability=0.0,
        use_fire_reset=False,
        episodic_life=True,
        reward_clip=False,
        stack_num=1,
        max_episode_steps=100_000,
    )
    # Both reset an ended env on the step after (EnvPool's only mode): that step's action is
    # dropped on both, so the sequences stay aligned.
    pool = fastretro_pool(game, noop_max=1, autoreset_mode="next_step")
    try:
        ref_obs, ref_info = ref.reset()
        obs, infos = pool.reset(seed=0)
        np.testing.assert_allclose(obs[0, 0], ref_obs[0, 0], atol=1)
        for t, action in enumerate(actions(game)):
            ref_obs, ref_reward, ref_term, ref_trunc, ref_info = ref.step(np.array([action]))
            obs, rewards, terminated, truncated, infos = pool.step(np.array([action]))
            assert rewards[0] == ref_reward[0], f"step {t}"
            assert terminated[0] == ref_term[0], f"step {t}"
            assert truncated[0] == ref_trunc[0], f"step {t}"
            assert infos["lives"][0] == ref_info["lives"][0], f"step {t}"
            game_over = bool(ref_info["terminated"][0])
            assert infos["game_over"][0] == game_over, f"step {t}"
            if game_over:
                break
            np.testing.assert_allclose(obs[0, 0], ref_obs[0, 0], atol=1, err_msg=f"step {t}")
        assert game_over, f"{game} did not end within {MAX_STEPS} steps"
    finally:
        pool.close()
        ref.close()
