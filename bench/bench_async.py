"""Async (send/recv) vs lock-step with a simulated agent that burns CPU on every batch.

The agent spends ``agent_us`` of CPU per env in its batch (a busy loop in the parent, as a policy
forward pass would), so both modes do the same agent work per env-step. In lock-step the
emulators sit idle while the agent computes; in async mode (batch_size = num_envs / 2) the
other half keeps running. Prints one parseable line per measurement and a markdown table.

Run: ``python bench/bench_async.py [--seconds 5] [--num-envs 8]``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv
from fastretro.tools.peers import CONFIGS, cores


def burn(us: float) -> None:
    """Use ``us`` microseconds of this thread's CPU time (the simulated policy).

    CPU time, not wall time: when the emulators take the core away, the agent takes longer, as
    a real CPU-bound forward pass would.
    """
    end = time.thread_time() + us * 1e-6
    while time.thread_time() < end:
        pass


def lock_step(env: VecRetroEnv, agent_us: float, seconds: float) -> float:
    """Agent steps/s of step() on every env, agent time agent_us x num_envs per batch."""
    n = env.num_envs
    actions = np.random.default_rng(0).integers(0, 2, (64, n, 12), dtype=np.uint8)
    env.reset(seed=0)
    steps, k = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        burn(agent_us * n)
        env.step(actions[k % 64])
        k += 1
        steps += n
    return steps / (time.perf_counter() - start)


def async_mode(env: VecRetroEnv, agent_us: float, seconds: float) -> float:
    """Agent steps/s of send/recv, agent time agent_us x batch_size per batch."""
    m = env.batch_size
    actions = np.random.default_rng(0).integers(0, 2, (64, m, 12), dtype=np.uint8)
    env.async_reset(seed=0)
    steps, k = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        *_, infos = env.recv()
        burn(agent_us * m)
        env.send(actions[k % 64], infos["env_id"])
        k += 1
        steps += m
    return steps / (time.perf_counter() - start)


def main() -> None:
    """Measure both modes at several agent costs; print lines, a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--config", default="contest", choices=list(CONFIGS))
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--agent-us", type=float, nargs="+", default=[0, 100, 250, 500])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    config = CONFIGS[args.config].replace(game=args.game)
    n, m = args.num_envs, args.num_envs // 2
    rows = []
    for agent_us in args.agent_us:
        with VecRetroEnv(config, n) as env:
            sync = lock_step(env, agent_us, args.seconds) * config.frameskip
        with VecRetroEnv(config, n, batch_size=m) as env:
            asyn = async_mode(env, agent_us, args.seconds) * config.frameskip
        row = {"agent_us_per_env": agent_us, "lock_step_fps": sync, "async_fps": asyn}
        rows.append(row)
        print(
            json.dumps(
                {"bench": "async", "config": args.config, "num_envs": n, "batch_size": m, **row}
            ),
            flush=True,
        )
    print(
        f"\n{args.game}, {args.config}, {n} envs (async batch_size {m}), "
        f"{platform.processor() or platform.machine()}, {cores()} cores, {args.seconds:g} s each"
    )
    print("| agent CPU per env-step | lock-step frames/s | async frames/s | async / lock-step |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['agent_us_per_env']:g} us | {r['lock_step_fps']:,.0f} | {r['async_fps']:,.0f} "
            f"| {r['async_fps'] / r['lock_step_fps']:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
