"""Where a pool's own overhead goes, per batch, against the same work in one process.

For each (config, num_envs): the in-process rate of one env's worker work (no pool, no
handshake: fastretro/runtime/inprocess.py), the pool's frames/s, its efficiency E = frames/s /
(min(num_envs, cores) x in-process frames/s), and ``VecRetroEnv.stats().overhead()``: the
parent's staging, wake-up, collection, the workers' wake-up latency and the scheduling left
(switches between workers on a core, envs that finish late), in microseconds per batch. Each
measurement runs in a fresh process. Prints a markdown table and one JSON line at the end.

Run: ``python bench/bench_overhead.py [--game GAME] [--configs ...] [--num-envs 1 4 16]
[--busy 1]`` (``--busy K``: K processes spin beside the pool, as another job would).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import CONFIGS, cores


def _inprocess(game, config_name, seconds, queue) -> None:
    from fastretro.tools.peers import measure_inprocess

    config = CONFIGS[config_name]
    queue.put(measure_inprocess(game, config, 1, seconds, 0.5) * config.frameskip)


def _pool(game, config_name, n, seconds, queue) -> None:
    from fastretro import VecRetroEnv
    from fastretro.tools.peers import action_choices, random_actions

    config = CONFIGS[config_name].replace(game=game)
    actions = random_actions(n, choices=action_choices(config))
    with VecRetroEnv(config, n) as env:
        env.reset(seed=0)
        end = time.perf_counter() + 0.5
        k = 0
        while time.perf_counter() < end:
            env.step(actions[k % len(actions)])
            k += 1
        env.reset_stats()
        start = time.perf_counter()
        steps = 0
        while time.perf_counter() - start < seconds:
            env.step(actions[k % len(actions)])
            k += 1
            steps += 1
        wall = time.perf_counter() - start
        st = env.stats()
        misses = int(env._hs.spin_misses)
    queue.put(
        {
            "frames_per_s": steps * n * config.frameskip / wall,
            "overhead_us": st.overhead(),
            "busy_us_per_env_step": 1e6 * float(st.busy_s.sum()) / max(1, int(st.steps.sum())),
            "spin_misses": misses,
            "spins": env.spins,
        }
    )


def _fresh(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    value = queue.get(timeout=600)
    proc.join()
    return value


def _busy_loop() -> None:
    while True:
        pass


def main() -> None:
    """Measure every (config, num_envs); print the table and a JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--configs", nargs="+", default=["rgb-fs1", "rgb-fs4-sticky", "contest"])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--busy", type=int, default=0, help="processes spinning beside the pool (another job)"
    )
    args = parser.parse_args()
    hogs = [
        mp.get_context("spawn").Process(target=_busy_loop, daemon=True) for _ in range(args.busy)
    ]
    for hog in hogs:
        hog.start()
    rows = []
    for config in args.configs:
        same = _fresh(_inprocess, args.game, config, args.seconds)
        for n in args.num_envs:
            got = _fresh(_pool, args.game, config, n, args.seconds)
            e = got["frames_per_s"] / (min(n, cores()) * same)
            rows.append({"config": config, "num_envs": n, "inprocess_fps": same, "E": e, **got})
    for hog in hogs:
        hog.kill()
    busy = f", {args.busy} busy process(es) beside" if args.busy else ""
    print(
        f"\n{args.game}, {platform.machine()}, {cores()} cores, {args.seconds:g} s per cell{busy}"
    )
    print("| config | envs | frames/s | E | stage | wake | collect | wake latency | scheduling |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o = r["overhead_us"]
        print(
            f"| {r['config']} | {r['num_envs']} | {r['frames_per_s']:,.0f} | {r['E']:.2f} | "
            f"{o['stage']:.0f} | {o['wake']:.0f} | {o['collect']:.0f} | "
            f"{o['wake_latency']:.0f} | {o['scheduling']:.0f} |"
        )
    print("(overhead columns: microseconds per batch)")
    print(json.dumps({"bench": "overhead", "game": args.game, "rows": rows}, default=float))


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
