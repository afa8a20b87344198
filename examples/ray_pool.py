"""The pool on Ray: shards of envs on Ray actors, one gymnasium VectorEnv in the driver.

On one machine (a local Ray is started for you):

    python examples/ray_pool.py --steps 100

On a cluster: ``ray start --head`` on one machine, ``ray start --address=HEAD_IP:6379`` on each
of the others, then ``python examples/ray_pool.py --address auto --envs-per-actor 16``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.integrations import ray as distributed
from fastretro.integrations.ray import RayVecRetroEnv


def main() -> None:
    """Random agent on a RayVecRetroEnv in the contest's preprocessing; prints frames/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--envs-per-actor", type=int, default=2)
    parser.add_argument("--steps", type=int, default=100, help="batches to run")
    parser.add_argument("--address", default=None, help="a running cluster (e.g. auto)")
    args = parser.parse_args()

    distributed.init(args.address)
    env = RayVecRetroEnv(
        args.game,
        args.num_envs,
        envs_per_actor=args.envs_per_actor,
        frameskip=4,
        grayscale=True,
        resize=(84, 84),
        frame_stack=4,
    )
    try:
        rng = np.random.default_rng(0)
        obs, _ = env.reset(seed=0)
        start = time.perf_counter()
        for step in range(args.steps):
            if step == args.steps // 5:  # the first steps warm up caches: time the rest
                start = time.perf_counter()
            actions = rng.integers(0, 2, env.action_space.shape, dtype=np.uint8)  # your policy
            obs, rewards, terminated, truncated, infos = env.step(actions)
        seconds = time.perf_counter() - start
        timed = args.steps - args.steps // 5
    finally:
        env.close()
    frames = timed * args.num_envs * 4
    print(f"{len(env.shards)} shards, observations {obs.shape}: {frames / seconds:,.0f} frames/s")


if __name__ == "__main__":
    main()
