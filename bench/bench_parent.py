"""The parent's own cost per lock-step batch: ``step()`` against the bare handshake.

Both loops drive the same pool (JERK's action set, contest timing, no frames, the setting where
the parent's serial part weighs most: one env per core). ``step`` is ``VecRetroEnv.step`` with
int64 indices (its staging fast path) and, for comparison, int32 indices (checked and converted
in Python); ``handshake`` writes the commands and wakes and waits on the workers with nothing
else. The difference is what the Python layer costs. The parent's CPU per batch comes from
``time.process_time`` (its syscalls included). Rounds alternate, since this VM drifts.

Run: ``python bench/bench_parent.py [--num-envs 2] [--steps 6000] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv
from fastretro.agents.jerk import PROFILES, jerk_actions
from fastretro.runtime.protocol import Command
from fastretro.tools.peers import cores


def loop(env: VecRetroEnv, how: str, batches: int) -> tuple[float, float]:
    """Run ``batches`` batches one way; return (agent steps/s, parent CPU us per batch)."""
    n = env.num_envs
    actions = np.ones(n, np.int32 if how == "step-int32" else np.int64)
    a, handshake = env._a, env._workers.handshake
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(batches):
        if how == "handshake":
            a["actions"][:, 0] = 1
            a["cmd"][:] = Command.STEP
            handshake.begin(n)
            handshake.wake()
            handshake.wait_parent(10.0)
        else:
            env.step(actions)
    wall = time.perf_counter() - start
    return batches * n / wall, 1e6 * (time.process_time() - cpu) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6000, help="agent steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ways = ("step-int64", "step-int32", "handshake")
    rows: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    options = {"frameskip": 4, "sticky_prob": 0.25, "max_episode_steps": 4500}
    profile = PROFILES[DEFAULT_GAME]
    with VecRetroEnv(
        DEFAULT_GAME, args.num_envs, actions=jerk_actions(profile), observe=False, **options
    ) as env:
        env.reset(seed=0)
        loop(env, "step-int64", 200)  # warm-up
        for _ in range(args.rounds):
            for how in ways:
                sps, cpu = loop(env, how, args.steps // args.num_envs)
                rows[how].append((sps, cpu))
                print(
                    json.dumps(
                        {
                            "bench": "parent",
                            "how": how,
                            "steps_per_s": round(sps),
                            "parent_cpu_us_per_batch": round(cpu, 1),
                        }
                    ),
                    flush=True,
                )
    print(f"\n{DEFAULT_GAME}, {args.num_envs} envs, contest timing, no frames, {cores()} cores")
    print("| loop | steps/s per round | parent CPU per batch (us) per round |")
    print("|---|---|---|")
    for how in ways:
        sps = ", ".join(f"{s:,.0f}" for s, _ in rows[how])
        cpu = ", ".join(f"{c:.0f}" for _, c in rows[how])
        print(f"| {how} | {sps} | {cpu} |")


if __name__ == "__main__":
    main()
