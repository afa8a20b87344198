"""``fastretro bench``: emulator frames/s of fastretro against its peers and two limits.

Frames are counted the EnvPool way: agent steps x frameskip, summed over envs. Two limits
answer two questions:

- **L**: ``cores x`` the frames/s of one process calling only the bare core (``em.step()``:
  no input, no RAM read, no screen grab), every frame drawn with its sound: what a plain user
  gets. frames/s / L says how fast. L does not depend on the config, but it is read once per
  config (and per ``repeat``), at different moments of the run, and every ratio uses the median
  of the run's readings, so that no cell looks better, or worse, for one slow or fast reading.
- **L_same**: ``min(num_envs, cores) x`` the frames/s of one env's worker work run in one
  process with no pool (fastretro/runtime/inprocess.py): the same configuration, the same
  shortcuts. frames/s / L_same is the pool's efficiency E: how much the pool itself costs.

fastretro does not draw the frames no observation uses nor synthesize the FM chip's sound
(fastretro/runtime/headless.py), so it can pass L; ``fastretro-drawn`` does all of that work,
as L's loop and the peers do. Each measurement runs in a fresh process, so no emulator ever
lives in this one and no measurement inherits another's state.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict
from importlib import metadata

from fastretro import DEFAULT_GAME
from fastretro.errors import InvalidArgumentError
from fastretro.tools.peers import BACKENDS, CONFIGS, OPENCV, cores

DEFAULT_CONFIGS = ("rgb-fs1", "rgb-fs4-sticky", "contest")
DEFAULT_NUM_ENVS = (1, 2, 4, 8, 16)


def _run_one(
    backend: str, game: str, config_name: str, num_envs: int, seconds: float, warmup: float, queue
) -> None:
    try:
        measure, _ = BACKENDS[backend]
        queue.put(("ok", measure(game, CONFIGS[config_name], num_envs, seconds, warmup)))
    except BaseException as exc:  # noqa: BLE001 - report, never hang the bench
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _measure(backend, game, config_name, num_envs, seconds, warmup, timeout=300.0):
    """Agent steps/s of one (backend, config, num_envs), measured in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_run_one, args=(backend, game, config_name, num_envs, seconds, warmup, queue)
    )
    proc.start()
    try:
        status, value = queue.get(timeout=timeout)
    except Exception:  # noqa: BLE001 - queue.Empty, or the child died
        status, value = "error", f"no result within {timeout:g} s (exit code {proc.exitcode})"
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return status, value


def _plan(configs, num_envs, backends):
    plan = []
    for config in configs:
        for backend in backends:
            for n in num_envs if BACKENDS[backend][1] else (1,):
                plan.append((config, backend, n))
    return plan


def _check(game, configs, num_envs, backends, seconds, repeat):
    for c in configs:
        if c not in CONFIGS:
            raise InvalidArgumentError(f"Unknown config {c!r}; expected one of {list(CONFIGS)}")
    for b in backends:
        if b not in BACKENDS:
            raise InvalidArgumentError(f"Unknown backend {b!r}; expected one of {list(BACKENDS)}")
    for n in num_envs:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidArgumentError(f"Expected every num_envs >= 1, got {n!r}")
    if not seconds > 0:
        raise InvalidArgumentError(f"Expected seconds > 0, got {seconds!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InvalidArgumentError(f"Expected repeat to be an int >= 1, got {repeat!r}")
    from fastretro.runtime.games import resolve

    resolve(game)  # unknown game or missing ROM: a clear error before anything starts


def run_bench(
    game: str = DEFAULT_GAME,
    configs=DEFAULT_CONFIGS,
    num_envs=DEFAULT_NUM_ENVS,
    backends=tuple(BACKENDS),
    seconds: float = 3.0,
    warmup: float = 0.5,
    out_dir: str | None = "bench/out",
    progress: bool = True,
    plot: bool = True,
    repeat: int = 1,
) -> dict:
    """Measure every (config, backend, num_envs); write JSON and a PNG into ``out_dir``.

    With ``repeat`` > 1 the whole plan runs that many times over, so that the readings of one
    cell are spread across the run rather than taken back to back (a slow spell of a shared
    machine then spoils one reading of many cells, not every reading of one), and each cell
    reports the median of its readings.

    Returns:
        A dict with ``machine``, ``settings`` and ``results``: one entry per cell with
        ``config``, ``backend``, ``num_envs``, ``frames_per_s`` (the median of the readings
        that succeeded; None if none did), ``readings`` (each one, None where it failed) and
        ``error`` (the first failure's message, if no reading succeeded).
    """
    configs, num_envs, backends = tuple(configs), tuple(num_envs), tuple(backends)
    _check(game, configs, num_envs, backends, seconds, repeat)
    if "sb3" in backends and not _installed("stable-baselines3"):
        backends = tuple(b for b in backends if b != "sb3")
        print("sb3 skipped: stable-baselines3 is not installed (pip install fastretro[sb3])")
    from tqdm import tqdm

    plan = _plan(configs, num_envs, backends)
    outcomes = {cell: [] for cell in plan}  # per cell: (frames/s or None, error or None)
    bar = tqdm(plan * repeat, desc="bench", unit="run", disable=not progress, dynamic_ncols=True)
    for config, backend, n in bar:
        bar.set_postfix_str(f"{config} {backend} x{n}")
        status, value = _measure(backend, game, config, n, seconds, warmup)
        if status == "ok":
            # The limit loop counts frames (bare em.step calls) and stands for every core; the
            # others count agent steps; an in-process reference is one process's frames/s.
            fps = value * cores() if backend == "limit" else value * CONFIGS[config].frameskip
            outcomes[config, backend, n].append((fps, None))
        else:
            outcomes[config, backend, n].append((None, value))
    results = []
    for (config, backend, n), cell in outcomes.items():
        ok = [fps for fps, _ in cell if fps is not None]
        errors = [error for _, error in cell if error is not None]
        results.append(
            {
                "config": config,
                "backend": backend,
                "num_envs": n if BACKENDS[backend][1] else None,
                "frames_per_s": statistics.median(ok) if ok else None,
                "readings": [fps for fps, _ in cell],
                "error": None if ok else errors[0],
            }
        )
    report = {
        "machine": machine_info(),
        "settings": {
            "game": game,
            "configs": {c: asdict(CONFIGS[c]) for c in configs},
            "num_envs": list(num_envs),
            "backends": list(backends),
            "seconds": seconds,
            "warmup": warmup,
            "repeat": repeat,
            "frames": "agent steps x frameskip, summed over envs (the EnvPool convention)",
            "limit": (
                "cores x frames/s of one process calling only em.step(), every frame drawn "
                "and its sound synthesized; "
                "read once per config and round, and the ratios use the readings' median"
            ),
            "fastretro-drawn": (
                "fastretro with skip_rendering=False and skip_audio=False: every frame drawn, "
                "with its sound, as in L's loop"
            ),
            "L_same": (
                "min(num_envs, cores) x frames/s of one env's worker work in one process, no "
                "pool (inprocess: fastretro's shortcuts; inprocess-drawn: none); E = frames/s "
                "/ L_same"
            ),
            "peer_preprocessing": "OpenCV" if OPENCV else "fastretro.runtime.kernels (no OpenCV)",
            "command": " ".join(["fastretro", "bench", *sys.argv[2:]]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "results": results,
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "bench.json"), "w") as f:
            json.dump(report, f, indent=2)
        if plot:
            plot_report(report, os.path.join(out_dir, "bench.png"))
    return report


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def machine_info() -> dict:
    """CPU, cores, platform and package versions, for the report."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for dist in ("fastretro", "stable-retro", "gymnasium", "numpy", "stable-baselines3"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": cores(),
        "python": platform.python_version(),
        "versions": versions,
    }


def run_limit(report) -> float | None:
    """L for every ratio of the run: the median of all its limit readings, or None.

    The limit is read once per config and repeat; a report without ``readings`` (written
    before ``repeat`` existed) counts each config's figure as one reading.
    """
    readings = [
        v
        for r in report["results"]
        if r["backend"] == "limit"
        for v in r.get("readings", [r["frames_per_s"]])
        if v is not None
    ]
    return statistics.median(readings) if readings else None


#: Each pool's same-work reference (fastretro/runtime/inprocess.py): its frames/s times the
#: cores the pool's envs can use is L_same, and the pool's frames/s over L_same its efficiency.
SAME_WORK = {"fastretro": "inprocess", "fastretro-drawn": "inprocess-drawn"}


def efficiency(report, config: str, backend: str, n: int) -> float | None:
    """E = frames/s / L_same, with L_same = min(n, cores) x the in-process frames/s."""
    fps = _figure(report, config, backend, n)
    ref = _figure(report, config, SAME_WORK.get(backend, ""), None)
    if not fps or not ref:
        return None
    return fps / (min(n, report["machine"]["cores"]) * ref)


def _figure(report, config, backend, n):
    for r in report["results"]:
        if (r["config"], r["backend"]) == (config, backend) and r["num_envs"] in (n, None):
            return r["frames_per_s"]
    return None


def format_table(report, markdown: bool = False) -> str:
    """One row per (config, backend), one column per num_envs: frames/s, x L, x gymnasium."""
    settings = report["settings"]
    ns = settings["num_envs"]
    lines = []
    header = ["config", "backend", *[f"{n} envs" for n in ns]]
    rows = []
    limit = run_limit(report)
    for config in settings["configs"]:
        for backend in settings["backends"]:
            cells = []
            for n in ns if BACKENDS[backend][1] else ns[:1]:
                fps = _figure(report, config, backend, n)
                gym = _figure(report, config, "gymnasium", n)
                if fps is None:
                    cells.append("failed")
                    continue
                cell = f"{fps:,.0f}"
                notes = []
                if limit:  # the limit's own readings too: their spread is the VM's noise
                    notes.append(f"{fps / limit:.2f} L")
                e = efficiency(report, config, backend, n)
                if e is not None:
                    notes.append(f"E {e:.2f}")
                if gym and backend in ("sb3", "fastretro", "fastretro-drawn"):
                    notes.append(f"{fps / gym:.2f}x gym")
                cells.append(cell + (f" ({', '.join(notes)})" if notes else ""))
            if not BACKENDS[backend][1]:
                cells += [""] * (len(ns) - 1)
            rows.append([config, backend, *cells])
    if markdown:
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in [header, *rows]:
            lines.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def plot_report(report, path: str) -> None:
    """Frames/s vs num_envs: a line per backend, L dashed, single env dotted; a panel per config.

    L is the median of the run's limit readings (:func:`run_limit`), the same on every panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    configs, ns = list(settings["configs"]), settings["num_envs"]
    fig, axes = plt.subplots(1, len(configs), figsize=(6 * len(configs), 4.5), squeeze=False)
    limit = run_limit(report)
    for ax, config in zip(axes[0], configs):
        if limit:
            ax.axhline(limit, color="black", linestyle="--", label=f"limit L ({limit:,.0f})")
        for backend in settings["backends"]:
            if backend == "limit":
                continue  # drawn above, once
            if backend == "single":
                y = _figure(report, config, backend, None)
                if y:
                    ax.axhline(y, color="gray", linestyle=":", label=f"single env ({y:,.0f})")
            else:
                ys = [_figure(report, config, backend, n) for n in ns]
                pts = [(n, y) for n, y in zip(ns, ys) if y]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=backend, linewidth=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("num_envs")
        ax.set_ylabel("emulator frames/s (agent steps x frameskip)")
        ax.set_title(f"{settings['game']} - {config}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    machine = report["machine"]
    fig.suptitle(f"{machine['cpu']}, {machine['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``fastretro bench [options]``."""
    parser = argparse.ArgumentParser(prog="fastretro bench", description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME, help="stable-retro game ID")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=list(DEFAULT_CONFIGS),
        help=f"configurations among {list(CONFIGS)}",
    )
    parser.add_argument("--num-envs", nargs="+", type=int, default=list(DEFAULT_NUM_ENVS))
    parser.add_argument(
        "--backends", nargs="+", default=list(BACKENDS), help=f"backends among {list(BACKENDS)}"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the whole plan K times over; each cell shows the median of its K readings",
    )
    parser.add_argument("--out", default="bench/out", help="folder for bench.json and bench.png")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        report = run_bench(
            args.game,
            args.configs,
            args.num_envs,
            args.backends,
            seconds=args.seconds,
            out_dir=args.out,
            progress=not args.no_progress,
            plot=not args.no_plot,
            repeat=args.repeat,
        )
    except InvalidArgumentError as exc:
        print(f"fastretro bench: {exc}", file=sys.stderr)
        return 2
    m = report["machine"]
    repeats = f", each cell the median of {args.repeat} runs spread over the bench"
    print(
        f"\n{report['settings']['game']} on {m['cpu']} ({m['cores']} cores), "
        f"{args.seconds:g} s per run{repeats if args.repeat > 1 else ''}"
        ". Frames = agent steps x frameskip; L = cores x bare em.step(),"
        " the median of the run's limit readings (one per config and round; the limit rows show"
        " their spread: the machine's noise); E = frames/s / L_same, L_same = min(envs, cores)"
        " x the inprocess row (the same work in one process, no pool); fastretro skips drawing"
        " frames no observation uses and the FM chip's sound, fastretro-drawn does all the"
        " core's work, as L does."
    )
    print(format_table(report, markdown=args.markdown))
    failed = [r for r in report["results"] if r["error"]]
    for r in failed:
        print(f"failed: {r['config']} {r['backend']} x{r['num_envs']}: {r['error']}")
    if args.out:
        print(
            f"\nwrote {os.path.join(args.out, 'bench.json')}"
            + ("" if args.no_plot else f" and {os.path.join(args.out, 'bench.png')}")
        )
    return 1 if failed else 0
