"""Soak: run a pool for a long time with random resets; RSS and /dev/shm must stay flat.

Every minute it records each worker's resident memory (from /proc) and the number of fastretro
segments in /dev/shm; at the end it compares the last sample with the first one taken after
warm-up (the first minute). Exit status 1 if any worker's RSS grew by more than ``--tolerance``
(default 5%) or the segment count changed. Prints one JSON line per sample and a summary line.

Run: ``python bench/soak.py --minutes 20 [--num-envs 4] [--json soak.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from tqdm import tqdm

from fastretro import DEFAULT_GAME, VecRetroEnv
from fastretro.runtime import shm


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    """Soak the pool; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--json", default=None, help="write the samples here")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    samples = []
    options = {
        "frameskip": 4,
        "sticky_prob": 0.25,
        "grayscale": True,
        "resize": (84, 84),
        "frame_stack": 4,
        "max_pool": True,
        "max_episode_steps": 500,
    }
    with VecRetroEnv(args.game, args.num_envs, **options) as env:
        pids = [p.pid for p in env._workers.procs]
        env.reset(seed=0)
        start = time.monotonic()
        end = start + args.minutes * 60
        next_sample, steps, resets, shown = start, 0, 0, 0
        bar = tqdm(total=int(args.minutes * 60), unit="s", desc="soak")
        while True:
            now = time.monotonic()
            if now >= next_sample or now >= end:
                sample = {
                    "minute": round((now - start) / 60, 2),
                    "steps": steps,
                    "resets": resets,
                    "parent_rss_kib": rss_kib(os.getpid()),
                    "worker_rss_kib": [rss_kib(p) for p in pids],
                    # This process's segments only: other pools on the machine come and go.
                    "segments": len(
                        [
                            n
                            for n in shm.list_segments()
                            if n.startswith(f"{shm.PREFIX}{os.getpid()}_")
                        ]
                    ),
                }
                samples.append(sample)
                print(json.dumps({"bench": "soak", **sample}), flush=True)
                next_sample += 60
            if now >= end:
                break
            env.step(rng.integers(0, 2, (args.num_envs, 12), dtype=np.uint8))
            steps += args.num_envs
            if rng.random() < 0.01:  # a random reset of some envs, now and then
                env.reset(seed=int(rng.integers(1 << 30)))
                resets += 1
            if int(now - start) > shown:
                bar.update(int(now - start) - shown)
                shown = int(now - start)
        bar.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(samples, f, indent=1)
    base = samples[1] if len(samples) > 2 else samples[0]
    last = samples[-1]
    growth = [b and (a - b) / b for a, b in zip(last["worker_rss_kib"], base["worker_rss_kib"])]
    ok = max(growth) <= args.tolerance and last["segments"] == base["segments"]
    print(
        json.dumps(
            {
                "bench": "soak-summary",
                "minutes": args.minutes,
                "steps": last["steps"],
                "resets": last["resets"],
                "max_worker_rss_growth": max(growth),
                "parent_rss_growth": (last["parent_rss_kib"] - base["parent_rss_kib"])
                / base["parent_rss_kib"],
                "segments_first_last": [base["segments"], last["segments"]],
                "ok": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
