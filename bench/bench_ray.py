"""RayVecRetroEnv vs a local VecRetroEnv on one machine: what the distribution layer costs.

Contest configuration (4 frames per step, sticky 0.25, max-pool, 84x84 gray, stack 4), 8 envs:
a local VecRetroEnv, then RayVecRetroEnv with 2 shards of 4 envs on a local Ray (its own
processes included), over both transports (the direct socket, the default; Ray actor calls).
Rounds alternate the three pools, so the VM's drift hits all of them. Also the bare cost of one
round trip (a shard returning a 4-env batch of 84x84x4 observations, no emulation) per transport,
from which the expected efficiency at 10 and 100 nodes follows. Prints JSON lines and a table.

Run: ``python bench/bench_ray.py [--seconds 5] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import ray

from fastretro import DEFAULT_GAME, VecRetroEnv
from fastretro.integrations import ray as distributed
from fastretro.integrations import ray_link
from fastretro.integrations.ray import RayVecRetroEnv
from fastretro.tools.peers import CONFIGS, cores


def steps_per_s(env, seconds: float) -> dict:
    """Agent steps/s over all envs (random buttons), the driver's CPU and the machine's load."""
    n = env.num_envs
    actions = np.random.default_rng(0).integers(0, 2, (64, n, 12), dtype=np.uint8)
    env.reset(seed=0)
    for k in range(20):
        env.step(actions[k % 64])
    busy0, total0 = machine_busy()
    cpu0 = time.process_time()
    batches, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(actions[batches % 64])
        batches += 1
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    busy1, total1 = machine_busy()
    return {
        "steps_per_s": batches * n / wall,
        "driver_cpu_ms_per_step": cpu / batches * 1e3,
        "machine_busy": (busy1 - busy0) / (total1 - total0),
    }


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


class _Echo(ray_link._Served):
    """A shard that returns a fixed batch: what a round trip costs without emulation."""

    OPS = ("step",)

    def __init__(self, shape):
        self.obs = np.zeros(shape, np.uint8)

    def step(self, actions):
        return self.obs, np.zeros(len(actions))


def round_trip_s(shards: int, obs_shape: tuple, transport: str, iterations: int = 500) -> float:
    """Seconds per step of the driver-to-shards round trip alone (no emulation)."""
    echo = ray.remote(num_cpus=0)(_Echo)
    actors = [echo.remote(obs_shape) for _ in range(shards)]
    links = [ray_link.TRANSPORTS[transport](a, k) for k, a in enumerate(actors)]
    actions = np.zeros((obs_shape[0], 12), np.uint8)

    def step():
        for link in links:
            link.submit("step", actions)
        for link in links:
            link.result()

    step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    seconds = (time.perf_counter() - start) / iterations
    for a in actors:
        ray.kill(a)
    return seconds


def measure(make, seconds: float) -> dict:
    """:func:`steps_per_s` of a freshly made env, closed afterwards."""
    env = make()
    try:
        return steps_per_s(env, seconds)
    finally:
        env.close()


def main() -> None:
    """Measure (rounds alternate the three pools), print, extrapolate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = CONFIGS["contest"].replace(game=args.game)
    options = {k: v for k, v in config.as_options().items() if k != "game"}
    n, frames = args.num_envs, config.frameskip
    distributed.init()
    makers = {
        "local": lambda: VecRetroEnv(config, n),
        "socket": lambda: RayVecRetroEnv(args.game, n, envs_per_actor=n // 2, **options),
        "ray": lambda: RayVecRetroEnv(
            args.game, n, envs_per_actor=n // 2, transport="ray", **options
        ),
    }
    rounds = []
    for r in range(args.rounds):
        row = {name: measure(make, args.seconds) for name, make in makers.items()}
        for name in ("socket", "ray"):
            row[name]["vs_local"] = row[name]["steps_per_s"] / row["local"]["steps_per_s"]
        print(json.dumps({"bench": "ray", "round": r, "num_envs": n, **row}), flush=True)
        rounds.append(row)
    trips = {t: round_trip_s(2, (n // 2, 84, 84, 4), t) for t in ("socket", "ray")}
    ray.shutdown()
    print(json.dumps({"bench": "ray_round_trip_ms", **{k: v * 1e3 for k, v in trips.items()}}))

    print(f"\n{args.game}, contest config, {n} envs, {cores()} cores, {args.seconds:g} s per cell")
    print("| round | pool | frames/s | vs local | driver CPU per step | machine busy |")
    print("|---|---|---|---|---|---|")
    labels = {
        "local": "VecRetroEnv (local)",
        "socket": "RayVecRetroEnv, 2 shards (socket)",
        "ray": 'RayVecRetroEnv, 2 shards (`transport="ray"`)',
    }
    for r, row in enumerate(rounds):
        for name, m in row.items():
            ratio = f"{m['vs_local']:.2f}x" if "vs_local" in m else "1.00x"
            print(
                f"| {r + 1} | {labels[name]} | {m['steps_per_s'] * frames:,.0f} | {ratio} "
                f"| {m['driver_cpu_ms_per_step']:.2f} ms | {m['machine_busy']:.0%} |"
            )
    for name in ("socket", "ray"):
        ratios = sorted(row[name]["vs_local"] for row in rounds)
        print(f"{name}: median {ratios[len(ratios) // 2]:.2f}x local over {len(rounds)} rounds")
    step_s = n / np.median([row["local"]["steps_per_s"] for row in rounds])
    print(
        f"\nround trip to 2 shards (4 x 84x84x4 obs each, no emulation): socket "
        f"{trips['socket'] * 1e3:.2f} ms, Ray calls {trips['ray'] * 1e3:.2f} ms per step; one "
        f"local batch of {n} envs takes {step_s * 1e3:.2f} ms."
    )
    for name, trip in trips.items():
        for nodes in (10, 100):
            # Each node runs its batch in parallel; the driver pays its share of the round trip
            # per shard, serially (sending, receiving, unpickling).
            per_shard = trip / 2
            efficiency = step_s / (step_s + per_shard * nodes)
            print(
                f"{name}: expected efficiency at {nodes} nodes (driver cost "
                f"{per_shard * 1e3:.2f} ms/shard): {efficiency:.2f}"
            )


if __name__ == "__main__":
    main()
