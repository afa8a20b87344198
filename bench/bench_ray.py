"""RayVecRetroEnv vs a local VecRetroEnv on one machine: what the distribution layer costs.

Contest configuration (4 frames per step, sticky 0.25, max-pool, 84x84 gray, stack 4), 8 envs:
a local VecRetroEnv, then RayVecRetroEnv with 2 shards of 4 envs on a local Ray (its own
processes included). Also the bare cost of one Ray round trip (an actor method returning a
84x84x4 x 4-env array), from which the expected efficiency at 10 and 100 nodes follows.
Prints JSON lines and a markdown table.

Run: ``python bench/bench_ray.py [--seconds 5]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray

from fastretro import DEFAULT_GAME, VecRetroEnv, distributed
from fastretro.distributed import RayVecRetroEnv
from fastretro.peers import CONFIGS, cores


def steps_per_s(env, seconds: float) -> float:
    """Agent steps/s over all envs, random buttons."""
    n = env.num_envs
    actions = np.random.default_rng(0).integers(0, 2, (64, n, 12), dtype=np.uint8)
    env.reset(seed=0)
    for k in range(20):
        env.step(actions[k % 64])
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[steps % 64])
        steps += 1
    return steps * n / (time.perf_counter() - start)


@ray.remote(num_cpus=0)
class _Echo:
    def __init__(self, shape):
        self.obs = np.zeros(shape, np.uint8)

    def step(self, actions):
        return self.obs, np.zeros(len(actions))


def round_trip_s(shards: int, obs_shape: tuple, iterations: int = 500) -> float:
    """Seconds per step of the driver-to-shards round trip alone (no emulation)."""
    actors = [_Echo.remote(obs_shape) for _ in range(shards)]
    actions = np.zeros((obs_shape[0], 12), np.uint8)
    ray.get([a.step.remote(actions) for a in actors])
    start = time.perf_counter()
    for _ in range(iterations):
        ray.get([a.step.remote(actions) for a in actors])
    seconds = (time.perf_counter() - start) / iterations
    for a in actors:
        ray.kill(a)
    return seconds


def main() -> None:
    """Measure, print, extrapolate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    config = CONFIGS["contest"]
    n, frames = args.num_envs, config.frameskip
    with VecRetroEnv(args.game, n, **config.pool_options()) as env:
        local = steps_per_s(env, args.seconds)
    distributed.init()
    env = RayVecRetroEnv(args.game, n, envs_per_actor=n // 2, **config.pool_options())
    try:
        sharded = steps_per_s(env, args.seconds)
    finally:
        env.close()
    trip = round_trip_s(2, (n // 2, 84, 84, 4))
    ray.shutdown()
    step_s = n / local  # one lock-step batch of the local pool
    rows = {
        "local_frames_per_s": local * frames,
        "ray_frames_per_s": sharded * frames,
        "ray_vs_local": sharded / local,
        "round_trip_ms": trip * 1e3,
        "local_batch_ms": step_s * 1e3,
    }
    print(json.dumps({"bench": "ray", "num_envs": n, **rows}))
    print(f"\n{args.game}, contest config, {n} envs, {cores()} cores, {args.seconds:g} s each")
    print("| pool | frames/s | vs local |")
    print("|---|---|---|")
    print(f"| VecRetroEnv (local) | {rows['local_frames_per_s']:,.0f} | 1.00x |")
    ray_fps, ratio = rows["ray_frames_per_s"], rows["ray_vs_local"]
    print(f"| RayVecRetroEnv, 2 shards | {ray_fps:,.0f} | {ratio:.2f}x |")
    print(
        f"\nRay round trip to 2 shards (4 x 84x84x4 obs each): {rows['round_trip_ms']:.2f} ms per "
        f"step; one local batch of {n} envs takes {rows['local_batch_ms']:.2f} ms."
    )
    for nodes in (10, 100):
        # Each node runs its own batch in parallel; the driver pays a round trip per shard,
        # overlapped by Ray except for the per-shard driver-side cost (serialisation, ray.get).
        per_shard = trip / 2
        efficiency = step_s / (step_s + per_shard * nodes)
        print(
            f"expected efficiency at {nodes} nodes (driver cost {per_shard * 1e3:.2f} ms/shard): "
            f"{efficiency:.2f}"
        )


if __name__ == "__main__":
    main()
