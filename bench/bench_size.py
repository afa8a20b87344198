"""The cost of size: start-up seconds and memory (PSS) per env, fastretro against gymnasium.

Each measurement runs in a fresh process: it builds a pool of N envs of one game with the
contest's preprocessing (4 frames a step, sticky 0.25, 84x84 gray, max-pool, stack 4), times
construction to the first ``reset``'s return, takes 50 steps of random buttons, then sums the
proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) of the process and of every process
under it. PSS shares each page among the processes that map it, so the sum counts every page
once: it is what the pool costs the machine. The peer is gymnasium's
``AsyncVectorEnv(shared_memory=True)`` over ``stable_retro.make(game, render_mode=None)`` and
baselines' wrappers doing the same (fastretro/tools/peers.py). Last, each pool steps for
``--rate-seconds`` (frames/s, all envs; the table gives each size's rate over the smallest's).

``--breakdown`` also shows what one of fastretro's workers holds (its smaps, mapping by mapping,
summed by part) and what each step of a worker's start adds (memory and seconds, in a forked
child that takes the worker's steps one at a time).

Prints one JSON line per measurement, then a markdown table.

Run: ``python bench/bench_size.py [--num-envs 8 64 256] [--rate-seconds 5] [--breakdown]
[--backends fastretro fastretro-stable-retro gymnasium]`` (fastretro: the pool's own choice,
for Genesis the libretro backend, several emulators per worker; fastretro-stable-retro:
stable-retro's emulator, one per worker; fastretro-libretro: the libretro backend, named)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.bench import machine_info
from fastretro.tools.peers import CONFIGS, EnvFn, random_actions

BACKENDS = ("fastretro", "fastretro-stable-retro", "fastretro-libretro", "gymnasium")
DEFAULT_BACKENDS = ("fastretro", "gymnasium")
MB = 1024.0  # smaps counts kB


def rollup(pid: int) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup``'s fields, in kB (``{}`` if the process is gone)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    fields[parts[0][:-1]] = int(parts[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def private_kb(fields: dict[str, int]) -> int:
    """Unique set size: the pages no other process maps."""
    return fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process ``pid`` has used (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (children, their children, ...)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(c) for c in f.read().split()]
            except FileNotFoundError:
                continue
            found += kids
            todo += kids
    return found


def build(
    backend: str,
    game: str,
    n: int,
    start_method: str | None = None,
    config_name: str = "contest",
    per_worker: int | None = None,
):
    """A pool of ``n`` envs of ``game`` in one of the bench's configs (the contest's).

    ``start_method``: multiprocessing's (``None``: each pool's default, fork on Linux);
    ``per_worker``: fastretro's ``envs_per_worker`` (``None``: the pool's choice).
    """
    config = CONFIGS[config_name].replace(game=game)
    if backend.startswith("fastretro"):
        from fastretro.runtime.pool import VecRetroEnv

        if backend != "fastretro":  # a backend named: fastretro-stable-retro, -libretro
            config = config.replace(backend=backend.removeprefix("fastretro-"))
        # 256 workers on 2 cores may take longer than the default two minutes to start.
        return VecRetroEnv(
            config,
            n,
            startup_timeout=900.0,
            start_method=start_method,
            envs_per_worker=per_worker,
        )
    import gymnasium

    return gymnasium.vector.AsyncVectorEnv(
        [EnvFn(game, config, i) for i in range(n)], shared_memory=True, context=start_method
    )


def memfd_copies(pid: int) -> tuple[int, int]:
    """How many memory files (``memfd:``) process ``pid`` holds open, and their bytes in memory.

    The bytes are the files' allocated blocks: what the libretro backend's copies of the core
    hold in shared memory (shmem), counted in PSS only where a process maps and has touched
    them.
    """
    count = held = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if os.readlink(path).startswith("/memfd:"):
                    count += 1
                    held += os.stat(path).st_blocks * 512
            except OSError:
                continue
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return count, held


def measure(
    backend: str,
    game: str,
    n: int,
    steps: int,
    start_method: str | None = None,
    rate_s=5.0,
    config_name: str = "contest",
    per_worker: int | None = None,
) -> dict:
    """Start-up seconds, PSS and frames/s of one pool, in this process (a fresh one)."""
    start, cpu = time.perf_counter(), time.process_time()
    env = build(backend, game, n, start_method, config_name, per_worker)
    built = time.perf_counter()
    env.reset(seed=0)
    ready = time.perf_counter()
    # CPU seconds, the parent's and every process's under it: what start-up costs whatever
    # else the machine runs (its seconds of wall time depend on that).
    startup_cpu = time.process_time() - cpu + sum(map(cpu_seconds, descendants(os.getpid())))
    actions = random_actions(n)
    try:
        for k in range(steps):
            env.step(actions[k % len(actions)])
        me = rollup(os.getpid())
        pids = [p for p in descendants(os.getpid()) if rollup(p)]
        kids = [rollup(p) for p in pids]
        memfds = [memfd_copies(p) for p in pids]
        # Then the step rate, at least rate_s seconds of whole batches.
        done, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < rate_s:
            env.step(actions[done % len(actions)])
            done += 1
        rate = done * n * CONFIGS[config_name].frameskip / (time.perf_counter() - begin)
        per_worker = getattr(getattr(env, "pool_config", None), "envs_per_worker", None)
    finally:
        env.close()
    pss = me["Pss"] + sum(k["Pss"] for k in kids)
    return {
        "bench": "size",
        "backend": backend,
        "config": config_name,
        "game": game,
        "num_envs": n,
        "envs_per_worker": per_worker,
        "start_method": start_method or "default",
        "startup_s": ready - start,
        "construct_s": built - start,
        "reset_s": ready - built,
        "startup_s_per_env": (ready - start) / n,
        "startup_cpu_s": startup_cpu,
        "pss_mb": pss / MB,
        "pss_mb_per_env": pss / MB / n,
        "parent_pss_mb": me["Pss"] / MB,
        "processes": len(kids),
        "child_pss_mb_mean": float(np.mean([k["Pss"] for k in kids])) / MB,
        "child_uss_mb_mean": float(np.mean([private_kb(k) for k in kids])) / MB,
        "memfd_copies": sum(c for c, _ in memfds),
        "memfd_mb": sum(b for _, b in memfds) / 2**20,
        "steps": steps,
        "frames_per_s": rate,
    }


# -- what one worker holds ------------------------------------------------------------------


def mappings(pid: int) -> list[dict]:
    """Each mapping of ``pid``: start, end, name, and its Pss and private kB."""
    rows: list[dict] = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(":"):  # "start-end perms offset dev inode [name]"
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                name = parts[5] if len(parts) > 5 else ""
                rows.append({"start": lo, "end": hi, "name": name, "pss": 0, "uss": 0})
            elif parts[0] == "Pss:":
                rows[-1]["pss"] += int(parts[1])
            elif parts[0] in ("Private_Clean:", "Private_Dirty:"):
                rows[-1]["uss"] += int(parts[1])
    return rows


def part_of(row: dict, previous: dict | None) -> str:
    """Which part of a worker a mapping belongs to (by its name, or what it follows)."""
    name = row["name"]
    base = os.path.basename(name)
    if "/stable_retro/cores/" in name:
        return f"emulator core ({base}): code and data"
    if name.startswith("/memfd:"):  # the libretro backend's private copies of the core
        return "emulator cores (private copies): code and data"
    if not name and previous is not None and previous["end"] == row["start"]:
        if "/stable_retro/cores/" in previous["name"] or previous["name"].startswith("/memfd:"):
            return "emulator core: zero-filled state (bss)"
    if base.startswith("_retro"):
        return "stable-retro (_retro.so)"
    if "llvmlite" in base:
        return "numba: LLVM (libllvmlite.so)"
    if name == "[heap]":
        return "malloc heap ([heap])"
    if not name:
        return "anonymous (Python objects, malloc arenas, mmap)"
    if name.startswith("/dev/shm") or base.startswith("fastretro_"):
        return "shared segment (observations, commands)"
    if "libpython" in base or base.startswith("python3"):
        return "the interpreter (libpython)"
    if ".so" in base:
        return "other libraries (numpy, extensions, libc)"
    return f"other ({name})"


def worker_parts(pid: int) -> dict[str, tuple[float, float]]:
    """One worker's (PSS, private) MB by part, largest private first."""
    parts: dict[str, list[float]] = {}
    previous = None
    for row in mappings(pid):
        part = part_of(row, previous)
        if not part.startswith("emulator core: zero"):
            previous = row if row["name"] else previous
        total = parts.setdefault(part, [0.0, 0.0])
        total[0] += row["pss"] / MB
        total[1] += row["uss"] / MB
    return dict(sorted(((k, tuple(v)) for k, v in parts.items()), key=lambda kv: -kv[1][1]))


def breakdown(
    game: str, n: int, steps: int, config_name: str = "contest", backend: str = "auto"
) -> dict:
    """What worker 0 of a pool of ``n`` holds after ``steps`` steps, by part."""
    from fastretro.runtime.pool import VecRetroEnv

    config = CONFIGS[config_name].replace(game=game, backend=backend)
    with VecRetroEnv(config, n) as env:
        env.reset(seed=0)
        actions = random_actions(n)
        for k in range(steps):
            env.step(actions[k % len(actions)])
        pid = env.worker_pids[0]
        per_worker = env.pool_config.envs_per_worker
        parts = worker_parts(pid)
        total = rollup(pid)
    return {
        "bench": "size-worker",
        "game": game,
        "num_envs": n,
        "envs_per_worker": per_worker,
        "pss_mb": total["Pss"] / MB,
        "private_mb": private_kb(total) / MB,
        "parts": {k: {"pss_mb": v[0], "private_mb": v[1]} for k, v in parts.items()},
    }


def phases(game: str) -> dict:
    """What each step of a worker's start adds: private MB and seconds, in a forked child.

    The child takes the steps ``fastretro.runtime.worker.worker_main`` takes, one at a time,
    through the runtime's own functions, after the parent's own start (``WorkerSet``'s
    preparations before the first fork); it reads its private memory after each.
    """
    import multiprocessing as mp

    from fastretro.runtime import worker, workers
    from fastretro.runtime.games import resolve_all

    config = CONFIGS["contest"].replace(game=game)
    setups = resolve_all(config, 1)
    prepare = getattr(workers, "prepare_parent", None)
    if prepare is not None:
        prepare(config, "stable-retro")
    ctx = mp.get_context("fork")
    parent_conn, child_conn = ctx.Pipe()
    proc = ctx.Process(target=_phases_child, args=(worker, config, setups[0], child_conn))
    proc.start()
    steps = parent_conn.recv()
    proc.join(60)
    return {"bench": "size-phases", "game": game, "phases": steps}


def _phases_child(worker, config, setup, conn) -> None:
    from fastretro.runtime.backends import make_emulator
    from fastretro.runtime.preprocess import FrameWriter

    start = time.perf_counter()
    out = []

    def mark(what: str) -> None:
        out.append((what, private_kb(rollup(os.getpid())) / MB, time.perf_counter() - start))

    mark("forked")
    prepare = getattr(worker, "prepare_process", None)
    if prepare is not None:
        prepare()
        mark("prepare_process (gc.freeze)")
    from fastretro.runtime._ext import handshake, worker_loop  # noqa: F401
    from fastretro.runtime.shm import SharedBuffers  # noqa: F401

    mark("imports of worker_main")
    emu = make_emulator("stable-retro", setup, config, 0)
    mark("make_emulator (stable-retro env, core, ROM, headless lookups)")
    emu.start()
    mark("first reset of the emulator")
    prep = config.preprocessing
    screen = emu.screen()
    row = np.zeros((2, *prep.buffer_shape(screen.shape)), np.uint8)[0]
    writer = FrameWriter(prep, screen.shape, emu.window(), emu.rotate, row, np.zeros(1, np.int32))
    writer.warm_up(screen)
    mark("FrameWriter and kernels' warm-up")
    for _ in range(200):
        emu.frame(False)
    mark("200 frames")
    conn.send(out)


# -- the driver ------------------------------------------------------------------------------


def run_one(args, backend: str, n: int) -> dict:
    """One measurement in a fresh process (``backend``: or "breakdown", "phases")."""
    cmd = [sys.executable, __file__, "--one", backend, str(n), "--game", args.game]
    cmd += ["--steps", str(args.steps), "--rate-seconds", str(args.rate_seconds)]
    if args.start_method:
        cmd += ["--start-method", args.start_method]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"bench": "size", "backend": backend, "num_envs": n, "error": done.stderr[-2000:]}
    return json.loads(lines[-1])


def available_mb() -> float:
    """MemAvailable, MB."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / MB
    return float("inf")


def table(rows: list[dict]) -> str:
    """The markdown table: a line per env count and pool, each against gymnasium's."""
    by = {(r["backend"], r["num_envs"]): r for r in rows if "pss_mb_per_env" in r}
    lines = [
        "| envs | pool | MB/env | gymnasium MB/env | ratio | start s (CPU s) "
        "| gymnasium start s (CPU s) | worker private MB "
        "| frames/s (x the fewest envs') | gymnasium frames/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    sizes = sorted({r["num_envs"] for r in rows})
    pools = [b for b in BACKENDS if b != "gymnasium" and any(k[0] == b for k in by)]

    def cell(backend, n, field, fmt):
        r = by.get((backend, n))
        return format(r[field], fmt) if r and field in r else "-"

    def start(backend, n):
        return (
            f"{cell(backend, n, 'startup_s', '.2f')} ({cell(backend, n, 'startup_cpu_s', '.1f')})"
        )

    def rate(backend, n, ratio=True):
        r, first = by.get((backend, n)), by.get((backend, sizes[0]))
        if not r or "frames_per_s" not in r:
            return "-"
        times = f" ({r['frames_per_s'] / first['frames_per_s']:.2f}x)" if first and ratio else ""
        return f"{r['frames_per_s']:,.0f}{times}"

    for n in sizes:
        g = by.get(("gymnasium", n))
        for pool in pools:
            f = by.get((pool, n))
            ratio = f"{f['pss_mb_per_env'] / g['pss_mb_per_env']:.2f}x" if f and g else "-"
            lines.append(
                f"| {n} | {pool} | {cell(pool, n, 'pss_mb_per_env', '.1f')} "
                f"| {cell('gymnasium', n, 'pss_mb_per_env', '.1f')} | {ratio} "
                f"| {start(pool, n)} | {start('gymnasium', n)} "
                f"| {cell(pool, n, 'child_uss_mb_mean', '.1f')} "
                f"| {rate(pool, n)} | {rate('gymnasium', n, ratio=False)} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Measure every backend at every size; print JSON lines and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--backends", nargs="+", default=list(DEFAULT_BACKENDS), choices=BACKENDS)
    parser.add_argument("--steps", type=int, default=50, help="steps before reading memory")
    parser.add_argument(
        "--rate-seconds", type=float, default=5.0, help="then step this long for frames/s"
    )
    parser.add_argument("--breakdown", action="store_true", help="also what a worker holds")
    parser.add_argument(
        "--start-method", default=None, help="multiprocessing's, for both (default: each's own)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--one", nargs=2, metavar=("BACKEND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        what, n = args.one[0], int(args.one[1])
        if what == "breakdown":
            row = breakdown(args.game, n, args.steps)
        elif what == "phases":
            row = phases(args.game)
        else:
            row = measure(what, args.game, n, args.steps, args.start_method, args.rate_seconds)
        print(json.dumps(row))
        return
    from tqdm import tqdm

    info = machine_info()
    import fastretro

    # The code measured: the fastretro imported (PYTHONPATH may name another tree) and its commit.
    info["fastretro_path"] = os.path.dirname(os.path.dirname(fastretro.__file__))
    info["commit"] = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        cwd=info["fastretro_path"],
    ).stdout.strip()
    print(json.dumps({"bench": "size-machine", **info}), flush=True)
    # The kernels' on-disk cache filled first, so that no measurement includes compiling.
    run_one(args, "fastretro", 1)
    rows: list[dict] = []
    per_env: dict[str, float] = {}
    plan = [(b, n) for n in sorted(args.num_envs) for b in args.backends]
    for backend, n in tqdm(plan, desc="size", unit="pool", dynamic_ncols=True):
        # A pool that would not fit (from the last size's MB per env, with a 2 GB margin)
        # is skipped, not swapped or OOM-killed.
        need = per_env.get(backend, 80.0) * n * 1.2
        if need > available_mb() - 2048:
            row = {"bench": "size", "backend": backend, "num_envs": n, "skipped": f"{need:.0f} MB"}
        else:
            row = run_one(args, backend, n)
        if "pss_mb_per_env" in row:
            per_env[backend] = row["pss_mb_per_env"]
        rows.append(row)
        tqdm.write(json.dumps(row))
    extra = []
    if args.breakdown:
        extra = [run_one(args, "breakdown", 8), run_one(args, "phases", 1)]
        for row in extra:
            print(json.dumps(row), flush=True)
    print(
        f"\n{args.game}, contest preprocessing, {args.steps} steps, start method "
        f"{args.start_method or 'default'}; {info['cpu']}, "
        f"{info['cores']} cores, {available_mb() / 1024:.0f} GiB available at the end; "
        f"start-up = construction to the first reset's return; MB = PSS of every process"
    )
    print(table(rows))
    for row in extra:
        if "error" in row:
            continue
        if row["bench"] == "size-worker":
            print(
                f"\nOne worker of {row['num_envs']} (MB): PSS {row['pss_mb']:.1f}, "
                f"private {row['private_mb']:.1f}"
            )
            print("| part | PSS | private |\n|---|---|---|")
            for part, v in row["parts"].items():
                if v["pss_mb"] >= 0.05 or v["private_mb"] >= 0.05:
                    print(f"| {part} | {v['pss_mb']:.1f} | {v['private_mb']:.1f} |")
        else:
            print("\nA worker's start, step by step (forked child; private MB, seconds so far)")
            print("| step | private MB | s |\n|---|---|---|")
            for what, mb, s in row["phases"]:
                print(f"| {what} | {mb:.1f} | {s:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows + extra, f, indent=1)


if __name__ == "__main__":
    main()
