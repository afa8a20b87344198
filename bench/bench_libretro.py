"""The libretro backend against stable-retro's: memory per env, start-up seconds and frames/s.

``backend="libretro"`` runs stable-retro's Genesis core on fastretro's own frontend, a private
copy of the core per emulator, so a worker may hold several emulators
(fastretro/runtime/backends/libretro.py); ``"stable-retro"`` holds one per worker process.

Each pool is measured in a fresh process, as bench/bench_size.py measures it: construction to
the first ``reset``'s return (seconds, and CPU seconds of every process), then ``--steps``
steps of random buttons, then the PSS of the pool's process and of every process under it
(``/proc/<pid>/smaps_rollup``), then frames/s for ``--rate-seconds``. PSS counts a page of the
libretro backend's private copies only where a process has touched it; the copies themselves
are memory files (shmem), so what the workers' ``memfd`` copies hold is also reported
(``memfd_mb``: their allocated blocks, PSS or not).

``--emulator`` also times the bare emulators in one process, without a pool: frames/s of one
emulator drawing every frame, drawing every 4th (the headless frame), and, for libretro, the
microseconds a frame of 1, 2, 4, 8 and 16 emulators in one process stepped in turn: what a
worker's share of the envs costs it beyond one env's work.

Prints one JSON line per measurement, then a markdown table.

``--breakdown`` also shows what worker 0 of each backend's pool holds, mapping by mapping, summed
by part (bench/bench_size.py's parts; a libretro copy of the core is among "other libraries").

Run: ``python bench/bench_libretro.py [--num-envs 16] [--configs contest rgb-fs1] [--emulator]
[--breakdown]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from bench_size import breakdown as size_breakdown
from bench_size import measure as size_measure

from fastretro import DEFAULT_GAME
from fastretro.tools.bench import machine_info
from fastretro.tools.peers import CONFIGS

BACKENDS = ("stable-retro", "libretro")


def measure(backend: str, config_name: str, game: str, n: int, per_worker, steps, rate_s):
    """Start-up, PSS and frames/s of one pool, in this process (a fresh one): bench_size's."""
    pool = f"fastretro-{backend}"
    row = size_measure(
        pool, game, n, steps, rate_s=rate_s, config_name=config_name, per_worker=per_worker
    )
    return {**row, "bench": "libretro-pool", "backend": backend}


def breakdown(backend: str, config_name: str, game: str, n: int, steps: int) -> dict:
    """What worker 0 of a pool of ``n`` holds after ``steps`` steps, by part (bench_size's)."""
    row = size_breakdown(game, n, steps, config_name, backend)
    return {**row, "bench": "libretro-worker", "backend": backend, "config": config_name}


def emulator_rates(backend: str, game: str, frames: int) -> dict:
    """Bare emulators' frames/s in this process (a fresh one), random buttons."""
    from fastretro.runtime.games import resolve

    setup = resolve(game)
    masks = np.random.default_rng(0).integers(0, 1 << 12, frames).tolist()

    def make():
        if backend == "stable-retro":
            from fastretro.runtime.backends.retro import RetroEmulator

            return RetroEmulator(setup)
        from fastretro.runtime.backends.libretro import LibretroEmulator

        return LibretroEmulator(setup)

    def rate(emulators, draw_every: int) -> float:
        for emu in emulators:
            emu.start()
        begin = time.perf_counter()
        for k, mask in enumerate(masks):
            draw = k % draw_every == draw_every - 1
            for emu in emulators:
                emu.press(emu.data.filter_action(mask))
                emu.frame(draw)
                if draw:
                    emu.screen()
        return len(masks) * len(emulators) / (time.perf_counter() - begin)

    one = make()
    row = {
        "bench": "libretro-emulator",
        "backend": backend,
        "game": game,
        "frames": frames,
        "drawn_fps": rate([one], 1),
        "every4th_fps": rate([one], 4),
        "skips_drawing": one.skips_drawing,
        "skips_audio": one.skips_audio,
    }
    if backend == "libretro":
        many = [one] + [make() for _ in range(IN_TURN[-1] - 1)]
        row["in_turn_us_per_frame"] = {k: in_turn(many[:k], frames) for k in IN_TURN}
        for emu in many[1:]:
            emu.close()
    one.close()
    return row


#: How many emulators one process steps in turn (bench_libretro --emulator): 16 is a worker's
#: share of 32 envs on 2 cores.
IN_TURN = (1, 2, 4, 8, 16)


def in_turn(emulators, frames: int) -> float:
    """Microseconds a frame of ``emulators`` stepped in turn, as a worker steps its envs.

    One frame each per round, drawn and written into a picture of each one's own (rgb-fs1's
    work), the same filtered random buttons for all; ``frames`` frames in all, after a round
    of warm-up.
    """
    for emu in emulators:
        emu.start()
    pictures = [np.zeros_like(emu.screen()) for emu in emulators]
    masks = np.random.default_rng(0).integers(0, 1 << 12, frames).tolist()
    rounds = max(frames // len(emulators), 2)
    begin = 0.0
    for k in range(rounds):
        if k == 1:
            begin = time.perf_counter()
        mask = emulators[0].data.filter_action(masks[k])
        for emu, picture in zip(emulators, pictures):
            emu.press(mask)
            emu.frame(True)
            emu.screen_into(picture)
    return (time.perf_counter() - begin) / ((rounds - 1) * len(emulators)) * 1e6


def run_one(args, *what) -> dict:
    """One measurement in a fresh interpreter (its JSON line)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--one", *map(str, what)]
    cmd += ["--game", args.game, "--steps", str(args.steps), "--rate-seconds"]
    cmd += [str(args.rate_seconds), "--frames", str(args.frames)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"bench": "libretro", "what": list(what), "error": out.stderr[-2000:]}
    return json.loads(lines[-1])


def table(rows: list[dict]) -> str:
    """The pools as a markdown table."""
    lines = [
        "| config | backend | envs | envs/worker | processes | MB/env (PSS) | memfd MB "
        "| worker private MB | start s (CPU s) | frames/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("bench") != "libretro-pool":
            continue
        lines.append(
            f"| {r['config']} | {r['backend']} | {r['num_envs']} | {r['envs_per_worker']} "
            f"| {r['processes']} | {r['pss_mb_per_env']:.1f} | {r['memfd_mb']:.0f} "
            f"| {r['child_uss_mb_mean']:.1f} | {r['startup_s']:.2f} ({r['startup_cpu_s']:.1f}) "
            f"| {r['frames_per_s']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Measure both backends; print JSON lines and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16])
    parser.add_argument("--configs", nargs="+", default=["contest"], choices=sorted(CONFIGS))
    parser.add_argument(
        "--libretro-per-worker",
        type=int,
        nargs="+",
        default=[0, 1],
        help="envs_per_worker for libretro pools (0: the pool's choice, one worker a core)",
    )
    parser.add_argument("--steps", type=int, default=50, help="steps before reading memory")
    parser.add_argument("--rate-seconds", type=float, default=5.0)
    parser.add_argument("--emulator", action="store_true", help="also time bare emulators")
    parser.add_argument("--frames", type=int, default=2000, help="frames per bare-emulator run")
    parser.add_argument(
        "--breakdown", action="store_true", help="also what worker 0 of each backend holds"
    )
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        if args.one[0] == "emulator":
            row = emulator_rates(args.one[1], args.game, args.frames)
        elif args.one[0] == "breakdown":
            _, backend, config, n = args.one
            row = breakdown(backend, config, args.game, int(n), args.steps)
        else:
            backend, config, n, per_worker = args.one
            per_worker = int(per_worker) or None
            row = measure(
                backend, config, args.game, int(n), per_worker, args.steps, args.rate_seconds
            )
        print(json.dumps(row))
        return
    info = machine_info()
    info["commit"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    print(json.dumps({"bench": "libretro-machine", **info}), flush=True)
    run_one(args, "stable-retro", args.configs[0], 1, 1)  # fills numba's cache first
    rows = []
    for config in args.configs:
        for n in args.num_envs:
            plan = [("stable-retro", 1)] + [("libretro", k) for k in args.libretro_per_worker]
            for backend, per_worker in plan:
                row = run_one(args, backend, config, n, per_worker)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.emulator:
        for backend in BACKENDS:
            row = run_one(args, "emulator", backend)
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.breakdown:
        for backend in BACKENDS:
            row = run_one(args, "breakdown", backend, args.configs[0], args.num_envs[0])
            print(json.dumps(row), flush=True)
            rows.append(row)
    print(
        f"\n{args.game}, {args.steps} steps before reading memory, {args.rate_seconds} s of "
        f"frames/s; {info['cpu']}, {info['cores']} cores; start = construction to the first "
        "reset's return; MB = PSS of every process; memfd MB = what the libretro copies hold"
    )
    print(table(rows))
    for row in rows:
        if "in_turn_us_per_frame" in row:
            turns = row["in_turn_us_per_frame"]  # JSON: its keys are strings
            one = turns["1"]
            print(
                "\nlibretro emulators stepped in turn in one process, us a frame (x one's): "
                + ", ".join(f"{k}: {us:.0f} ({us / one:.2f}x)" for k, us in turns.items())
            )
    for row in rows:
        if row.get("bench") == "libretro-worker":
            print(
                f"\nWorker 0 of {row['num_envs']} {row['backend']} envs ({row['envs_per_worker']} "
                f"a worker), MB: PSS {row['pss_mb']:.1f}, private {row['private_mb']:.1f}"
            )
            print("| part | PSS | private |\n|---|---|---|")
            for part, v in row["parts"].items():
                if v["pss_mb"] >= 0.05 or v["private_mb"] >= 0.05:
                    print(f"| {part} | {v['pss_mb']:.1f} | {v['private_mb']:.1f} |")


if __name__ == "__main__":
    main()
