"""Where a pool's own overhead goes, per batch, against the same work in one process.

For each (config, num_envs): the in-process rate of one env's worker work (no pool, no
handshake: fastretro/runtime/inprocess.py), the pool's frames/s, its efficiency E = frames/s /
(min(num_envs, cores) x in-process frames/s), and ``VecRetroEnv.stats().overhead()``: the
parent's staging, wake-up, collection, the workers' wake-up latency and the scheduling left
(switches between workers on a core, envs that finish late), in microseconds per batch. Each
measurement runs in a fresh process. Prints a markdown table and one JSON line at the end.

Run: ``python bench/bench_overhead.py [--game GAME] [--configs ...] [--num-envs 1 4 16]
[--busy 1] [--spin off auto on] [--envs-per-worker auto 4] [--repeat 3]`` (``--busy K``: K
processes spin beside the pool, as another job would; ``--spin``: ``PoolConfig.spin`` False,
None and True, each cell measured with each, interleaved; ``--envs-per-worker``: the same with
``PoolConfig.envs_per_worker``; ``--repeat K``: the plan K times over, each cell the median
run). The last column is the workers' time starting episodes, summed, per batch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import statistics
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.bench import machine_info
from fastretro.tools.peers import CONFIGS, cores


def _inprocess(game, config_name, seconds, queue) -> None:
    from fastretro.tools.peers import measure_inprocess

    config = CONFIGS[config_name]
    queue.put(measure_inprocess(game, config, 1, seconds, 0.5) * config.frameskip)


SPIN = {"off": False, "auto": None, "on": True}


def _pool(game, config_name, n, seconds, spin, per_worker, queue) -> None:
    from fastretro import VecRetroEnv
    from fastretro.tools.peers import action_choices, random_actions

    config = CONFIGS[config_name].replace(game=game)
    actions = random_actions(n, choices=action_choices(config))
    epw = None if per_worker == "auto" else int(per_worker)
    with VecRetroEnv(config, n, spin=SPIN[spin], envs_per_worker=epw) as env:
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
            # The workers' time starting episodes (ALE's reset_game runs ~80 frames in one go).
            "reset_us_per_batch": 1e6 * float(st.reset_s.sum()) / max(1, st.batches),
            "spin_misses": misses,
            "spins": env.spins,
            "workers_spin": env.workers_spin,
        }
    )


def _fresh(target, *args):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    deadline = time.monotonic() + 600
    while True:
        try:
            value = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive() or time.monotonic() > deadline:
                proc.kill()
                failed = f"{target.__name__}{args} failed (exit {proc.exitcode})"
                raise RuntimeError(failed) from None
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
    parser.add_argument("--spin", nargs="+", choices=sorted(SPIN), default=["auto"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--envs-per-worker",
        nargs="+",
        default=["auto"],
        help="PoolConfig.envs_per_worker values to compare (ALE), or auto",
    )
    args = parser.parse_args()
    hogs = [
        mp.get_context("spawn").Process(target=_busy_loop, daemon=True) for _ in range(args.busy)
    ]
    for hog in hogs:
        hog.start()
    runs: dict[tuple, list[dict]] = {}
    same: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for config in args.configs:
            same.setdefault(config, []).append(_fresh(_inprocess, args.game, config, args.seconds))
            for n in args.num_envs:
                for spin in args.spin:
                    for epw in args.envs_per_worker:
                        got = _fresh(_pool, args.game, config, n, args.seconds, spin, epw)
                        runs.setdefault((config, n, spin, epw), []).append(got)
    rows = []
    for (config, n, spin, epw), got in runs.items():
        median = sorted(got, key=lambda r: r["frames_per_s"])[len(got) // 2]
        inprocess = statistics.median(same[config])
        e = median["frames_per_s"] / (min(n, cores()) * inprocess)
        rows.append(
            {"config": config, "num_envs": n, "spin": spin, "envs_per_worker": epw,
             "inprocess_fps": inprocess, "E": e,
             "readings_fps": [r["frames_per_s"] for r in got], **median}
        )  # fmt: skip
    for hog in hogs:
        hog.kill()
    busy = f", {args.busy} busy process(es) beside" if args.busy else ""
    print(
        f"\n{args.game}, {machine_info()['cpu']}, {cores()} cores, "
        f"{args.seconds:g} s per cell, median of {args.repeat}{busy}"
    )
    print(
        "| config | envs | per worker | spin | frames/s | E | stage | wake | collect "
        "| wake latency | scheduling | resets |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        o = r["overhead_us"]
        print(
            f"| {r['config']} | {r['num_envs']} | {r['envs_per_worker']} | {r['spin']} "
            f"| {r['frames_per_s']:,.0f} | "
            f"{r['E']:.2f} | "
            f"{o['stage']:.0f} | {o['wake']:.0f} | {o['collect']:.0f} | "
            f"{o['wake_latency']:.0f} | {o['scheduling']:.0f} | {r['reset_us_per_batch']:.0f} |"
        )
    print("(overhead columns and resets: microseconds per batch; resets: the workers' summed)")
    print(json.dumps({"bench": "overhead", "game": args.game, "rows": rows}, default=float))


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
