"""Random agent on the pool: the smallest complete use of VecRetroEnv."""

import argparse
import time

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()

    with VecRetroEnv(args.game, args.num_envs, frameskip=4, sticky_prob=0.25) as env:
        env.reset(seed=0)
        returns = np.zeros(args.num_envs)
        episodes = []
        start = time.perf_counter()
        for _ in range(args.steps):
            _, rewards, terminated, truncated, _ = env.step(env.action_space.sample())
            returns += rewards
            for i in np.flatnonzero(terminated | truncated):
                episodes.append(returns[i])
                returns[i] = 0
        elapsed = time.perf_counter() - start
    frames = args.steps * args.num_envs * 4
    print(
        f"{frames / elapsed:,.0f} frames/s; {len(episodes)} episodes ended; "
        f"running returns {returns.round(1).tolist()}"
    )


if __name__ == "__main__":
    main()
