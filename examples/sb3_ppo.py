"""PPO from stable-baselines3 on fastretro: the pool behind SB3's VecEnv, a frame stack, a CNN.

Needs the sb3 extra: pip install "fastretro[sb3]". The default budget takes about 10 s on 2
cores; a real run wants millions of timesteps (the 2018 Retro Contest allowed 1M). The frames are
made the way retro-baselines made them (84x84 gray, a stack of 4), inside the workers.
"""

import argparse
import os
import time

# Before torch loads: its OpenMP threads spin briefly between layers, then sleep, leaving the
# cores to the emulators (README, "Tip").
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numpy as np  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import VecMonitor, VecTransposeImage  # noqa: E402

from fastretro import DEFAULT_GAME, VecRetroEnv  # noqa: E402
from fastretro.integrations.sb3 import SB3VecEnv  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=1024, help="total agent steps")
    parser.add_argument("--n-steps", type=int, default=128, help="steps per env per rollout")
    parser.add_argument("--n-epochs", type=int, default=4, help="passes over each rollout")
    parser.add_argument("--max-episode-steps", type=int, default=4500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="path to save the trained model to")
    args = parser.parse_args()

    pool = VecRetroEnv(
        args.game,
        args.num_envs,
        frameskip=4,
        sticky_prob=0.25,
        grayscale=True,
        resize=(84, 84),
        frame_stack=4,
        max_episode_steps=args.max_episode_steps,
        # SB3 resets an env in the step that ends its episode: the pool must do the same.
        autoreset_mode="same_step",
    )
    with SB3VecEnv(pool) as venv:
        # The stack comes from the pool (no VecFrameStack); SB3's CNN wants channels first.
        env = VecTransposeImage(VecMonitor(venv))
        model = PPO(
            "CnnPolicy",
            env,
            n_steps=args.n_steps,
            batch_size=min(64, args.n_steps * args.num_envs),
            n_epochs=args.n_epochs,
            learning_rate=2.5e-4,
            clip_range=0.1,
            ent_coef=0.01,
            seed=args.seed,
        )
        start = time.perf_counter()
        model.learn(total_timesteps=args.timesteps)
        elapsed = time.perf_counter() - start
        if args.save:
            model.save(args.save)
    returns = [ep["r"] for ep in model.ep_info_buffer]
    mean = f"{np.mean(returns):.1f}" if returns else "n/a"
    print(
        f"{model.num_timesteps} timesteps in {elapsed:.1f} s "
        f"({model.num_timesteps / elapsed:,.0f} steps/s); {len(returns)} episodes ended, "
        f"mean return {mean}"
    )


if __name__ == "__main__":
    main()
