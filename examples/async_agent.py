"""Async mode: the agent acts on whichever envs finish first while the others keep running.

python examples/async_agent.py --steps 200
"""

from __future__ import annotations

import argparse

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv


def main() -> None:
    """Random agent on an async pool of 4 envs, acting on batches of 2."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200, help="batches to run")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    returns = np.zeros(args.num_envs)
    with VecRetroEnv(
        args.game, args.num_envs, batch_size=args.batch_size, actions="sonic7", frameskip=4
    ) as env:
        env.async_reset(seed=0)
        for _ in range(args.steps):
            obs, rewards, terminated, truncated, infos = env.recv()
            ids = infos["env_id"]
            returns[ids] += rewards
            actions = rng.integers(0, env.single_action_space.n, len(ids))  # your policy here
            env.send(actions, ids)
        # Leaving the block closes the pool, envs still running included.
    print(f"returns so far per env: {returns.tolist()}")


if __name__ == "__main__":
    main()
