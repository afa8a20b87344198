"""SB3VecEnv against SB3's own SubprocVecEnv over plain stable-retro: same seed, same actions,
identical observations, rewards, dones and episode ends."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from conftest import GAME

pytest.importorskip("stable_baselines3", reason="stable-baselines3 is a test extra")
from stable_baselines3.common.vec_env import SubprocVecEnv  # noqa: E402

from fastretro import VecRetroEnv  # noqa: E402
from fastretro.config import EnvConfig  # noqa: E402
from fastretro.integrations.sb3 import SB3VecEnv  # noqa: E402
from fastretro.tools.peers import make_plain_env  # noqa: E402

CONTEST_TIMING = EnvConfig(frameskip=4, sticky_prob=0.25)
EPISODE_STEPS = 7


class _PlainEnv:
    """Picklable factory: plain stable-retro + the contest's sticky frame skip + a time limit."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self):
        env = make_plain_env(GAME, CONTEST_TIMING, seed=self.seed)
        return gymnasium.wrappers.TimeLimit(env, max_episode_steps=EPISODE_STEPS)


# The one-line swap: SubprocVecEnv([...]) -> SB3VecEnv(VecRetroEnv(...)), with the pool's
# default autoreset mode or the one that saves a round trip per episode end.
@pytest.mark.parametrize("autoreset", [{}, {"autoreset_mode": "same_step"}])
def test_sb3vecenv_and_subprocvecenv_agree_step_for_step(autoreset):
    n, steps = 2, 24  # three episode ends per env
    actions = np.random.default_rng(5).integers(0, 2, (steps, n, 12), dtype=np.uint8)
    ours = SB3VecEnv(
        VecRetroEnv(
            GAME, n, frameskip=4, sticky_prob=0.25, max_episode_steps=EPISODE_STEPS, **autoreset
        )
    )
    peer = SubprocVecEnv([_PlainEnv(i) for i in range(n)], start_method="spawn")
    try:
        ours.seed(0)  # env i's sticky draws are seeded with 0 + i, as the peer's wrappers are
        np.testing.assert_array_equal(ours.reset(), peer.reset())
        ends = 0
        for t, a in enumerate(actions):
            obs, rew, done, infos = ours.step(a)
            p_obs, p_rew, p_done, p_infos = peer.step(a)
            np.testing.assert_array_equal(obs, p_obs, err_msg=f"step {t}")
            np.testing.assert_array_equal(rew, p_rew, err_msg=f"step {t}")
            np.testing.assert_array_equal(done, p_done, err_msg=f"step {t}")
            for i in np.flatnonzero(done):
                ends += 1
                np.testing.assert_array_equal(
                    infos[i]["terminal_observation"], p_infos[i]["terminal_observation"]
                )
                assert infos[i]["TimeLimit.truncated"] == p_infos[i]["TimeLimit.truncated"]
        assert ends == n * (steps // EPISODE_STEPS)
    finally:
        ours.close()
        peer.close()
