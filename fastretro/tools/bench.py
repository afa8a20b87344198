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
from fastretro.tools.peers import BACKENDS, CONFIGS, FAMILIES, OPENCV, cores, family

DEFAULT_NUM_ENVS = (1, 2, 4, 8, 16)
#: The configs of the default game (Airstriker).
DEFAULT_CONFIGS = FAMILIES["retro"][0]
#: Backends whose frames/s counts bare emulator frames, one process's worth: times the cores.
LIMITS = ("limit", "limit-ale")


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


def _plan(games, configs, num_envs, backends):
    """Every (game, config, backend, num_envs) cell; per game its family's defaults."""
    plan = []
    for game in games:
        for config in configs or FAMILIES[family(game)][0]:
            for backend in backends or FAMILIES[family(game)][1]:
                for n in num_envs if BACKENDS[backend][1] else (1,):
                    plan.append((game, config, backend, n))
    return plan


def _check(games, configs, num_envs, backends, seconds, repeat):
    for c in configs or ():
        if c not in CONFIGS:
            raise InvalidArgumentError(f"Unknown config {c!r}; expected one of {list(CONFIGS)}")
    for b in backends or ():
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

    for game in games:
        resolve(game)  # unknown game or missing ROM: a clear error before anything starts


def run_bench(
    game: str | tuple[str, ...] = DEFAULT_GAME,
    configs=None,
    num_envs=DEFAULT_NUM_ENVS,
    backends=None,
    seconds: float = 3.0,
    warmup: float = 0.5,
    out_dir: str | None = "bench/out",
    progress: bool = True,
    plot: bool = True,
    repeat: int = 1,
) -> dict:
    """Measure every (game, config, backend, num_envs); write JSON and a PNG into ``out_dir``.

    ``game`` is one game or several; ``configs`` and ``backends`` default to each game's
    family's (:data:`fastretro.tools.peers.FAMILIES`: Atari 2600 games are benched under the
    standard protocol against EnvPool and ALE's vector env). With ``repeat`` > 1 the whole plan
    runs that many times over, so that the readings of one cell are spread across the run
    rather than taken back to back, and each cell reports the median of its readings.

    Returns:
        A dict with ``machine``, ``settings`` and ``results``: one entry per cell with
        ``game``, ``config``, ``backend``, ``num_envs``, ``frames_per_s`` (the median of the
        readings that succeeded; None if none did), ``readings`` (each one, None where it
        failed) and ``error`` (the first failure's message, if no reading succeeded).
    """
    games = (game,) if isinstance(game, str) else tuple(game)
    configs = tuple(configs) if configs else None
    backends = tuple(backends) if backends else None
    num_envs = tuple(num_envs)
    _check(games, configs, num_envs, backends, seconds, repeat)
    plan = _plan(games, configs, num_envs, backends)
    for backend, dist, extra in (
        ("sb3", "stable-baselines3", "sb3"),
        ("envpool", "envpool", "peers"),
        ("ale-vector", "ale-py", "atari"),
    ):
        if any(cell[2] == backend for cell in plan) and not _installed(dist):
            plan = [cell for cell in plan if cell[2] != backend]
            print(f"{backend} skipped: {dist} is not installed (pip install fastretro[{extra}])")
    from tqdm import tqdm

    outcomes = {cell: [] for cell in plan}  # per cell: (frames/s or None, error or None)
    bar = tqdm(plan * repeat, desc="bench", unit="run", disable=not progress, dynamic_ncols=True)
    for game_id, config, backend, n in bar:
        bar.set_postfix_str(f"{game_id.split('-')[0]} {config} {backend} x{n}")
        status, value = _measure(backend, game_id, config, n, seconds, warmup)
        if status == "ok":
            # A limit loop counts bare frames in one process and stands for every core; the
            # others count agent steps; an in-process reference is one process's frames/s.
            fps = value * cores() if backend in LIMITS else value * CONFIGS[config].frameskip
            outcomes[game_id, config, backend, n].append((fps, None))
        else:
            outcomes[game_id, config, backend, n].append((None, value))
    results = []
    for (game_id, config, backend, n), cell in outcomes.items():
        ok = [fps for fps, _ in cell if fps is not None]
        errors = [error for _, error in cell if error is not None]
        results.append(
            {
                "game": game_id,
                "config": config,
                "backend": backend,
                "num_envs": n if BACKENDS[backend][1] else None,
                "frames_per_s": statistics.median(ok) if ok else None,
                "readings": [fps for fps, _ in cell],
                "error": None if ok else errors[0],
            }
        )
    used_configs = list(dict.fromkeys(cell[1] for cell in plan))
    report = {
        "machine": machine_info(),
        "settings": {
            "game": games[0],
            "games": list(games),
            "configs": {c: _config_summary(CONFIGS[c]) for c in used_configs},
            "num_envs": list(num_envs),
            "backends": list(dict.fromkeys(cell[2] for cell in plan)),
            "seconds": seconds,
            "warmup": warmup,
            "repeat": repeat,
            "frames": "agent steps x frameskip, summed over envs (the EnvPool convention)",
            "limit": (
                "cores x frames/s of one process calling only em.step(), every frame drawn "
                "and its sound synthesized; "
                "read once per config and round, and the ratios use the readings' median"
            ),
            "limit-ale": "cores x frames/s of one process calling only ALE's act()",
            "fastretro-drawn": (
                "fastretro with skip_rendering=False and skip_audio=False: every frame drawn, "
                "with its sound, as in L's loop"
            ),
            "L_same": (
                "min(num_envs, cores) x frames/s of one env's worker work in one process, no "
                "pool (inprocess: fastretro's shortcuts; inprocess-drawn: none); E = frames/s "
                "/ L_same"
            ),
            "E_lean": (
                "frames/s / (min(num_envs, cores) x the lean row): the core's own work in a "
                "minimal loop over stable-retro's API (buttons, frames, the observed pictures, "
                "the RAM variables; lean: fastretro's core shortcuts, lean-drawn: none)"
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


def _config_summary(config) -> dict:
    # The config's fields but the game, which the bench sets per row.
    return {k: v for k, v in asdict(config).items() if k != "game"}


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


def _rows(report, game: str | None = None) -> list[dict]:
    # Reports written before several games existed have no "game" in their rows.
    default = report["settings"].get("game")
    return [r for r in report["results"] if game is None or r.get("game", default) == game]


def run_limit(report, game: str | None = None, backend: str = "limit") -> float | None:
    """L of a game's ratios: the median of all its ``backend`` readings in the run, or None.

    The limit is read once per config and repeat; a report without ``readings`` (written
    before ``repeat`` existed) counts each config's figure as one reading.
    """
    readings = [
        v
        for r in _rows(report, game)
        if r["backend"] == backend
        for v in r.get("readings", [r["frames_per_s"]])
        if v is not None
    ]
    return statistics.median(readings) if readings else None


#: Each pool's same-work reference (fastretro/runtime/inprocess.py): its frames/s times the
#: cores the pool's envs can use is L_same, and the pool's frames/s over L_same its efficiency.
SAME_WORK = {
    "fastretro": "inprocess",
    "fastretro-drawn": "inprocess-drawn",
    "fastretro-libretro": "inprocess",
}
#: Each pool's lean reference (peers.measure_lean): the core's own work in a minimal loop over
#: stable-retro's API, so that E_lean also counts what a worker does beyond the core.
LEAN_WORK = {"fastretro": "lean", "fastretro-drawn": "lean-drawn", "fastretro-libretro": "lean"}
#: The peers each fastretro cell is compared with, and how the table names the ratio.
PEERS = {"gymnasium": "gym", "ale-vector": "ALE-vec", "envpool": "EnvPool"}


def efficiency(report, config: str, backend: str, n: int, game: str | None = None, lean=False):
    """E = frames/s / L_same, with L_same = min(n, cores) x the in-process frames/s.

    ``lean``: E_lean, against the lean reference's frames/s instead.
    """
    fps = _figure(report, config, backend, n, game)
    ref = _figure(report, config, (LEAN_WORK if lean else SAME_WORK).get(backend, ""), None, game)
    if not fps or not ref:
        return None
    return fps / (min(n, report["machine"]["cores"]) * ref)


def _figure(report, config, backend, n, game: str | None = None):
    for r in _rows(report, game):
        if (r["config"], r["backend"]) == (config, backend) and r["num_envs"] in (n, None):
            return r["frames_per_s"]
    return None


def _games(report) -> list[str]:
    settings = report["settings"]
    return settings.get("games", [settings.get("game")])


def format_table(report, markdown: bool = False) -> str:
    """One row per (game, config, backend), a column per num_envs: frames/s and its ratios.

    Each cell: frames/s, its ratio to L (and to ALE's bare rate on Atari), its efficiency E
    (fastretro), and fastretro's ratio to each peer measured.
    """
    settings = report["settings"]
    ns = settings["num_envs"]
    games = _games(report)
    header = ["game", "config", "backend", *[f"{n} envs" for n in ns]]
    rows = []
    for game in games:
        limit = run_limit(report, game)
        limit_ale = run_limit(report, game, "limit-ale")
        short = (game or "").split("-")[0]
        for config in settings["configs"]:
            for backend in settings["backends"]:
                if not any(
                    r["config"] == config and r["backend"] == backend for r in _rows(report, game)
                ):
                    continue
                cells = []
                for n in ns if BACKENDS[backend][1] else ns[:1]:
                    fps = _figure(report, config, backend, n, game)
                    if fps is None:
                        cells.append("failed")
                        continue
                    notes = []
                    if limit:  # the limit's own readings too: their spread is the VM's noise
                        notes.append(f"{fps / limit:.2f} L")
                    if limit_ale:
                        notes.append(f"{fps / limit_ale:.2f} L_ale")
                    e = efficiency(report, config, backend, n, game)
                    if e is not None:
                        notes.append(f"E {e:.2f}")
                    e_lean = efficiency(report, config, backend, n, game, lean=True)
                    if e_lean is not None:
                        notes.append(f"E_lean {e_lean:.2f}")
                    if backend in ("sb3", *SAME_WORK):
                        for peer, name in PEERS.items():
                            other = _figure(report, config, peer, n, game)
                            if other:
                                notes.append(f"{fps / other:.2f}x {name}")
                    cells.append(f"{fps:,.0f}" + (f" ({', '.join(notes)})" if notes else ""))
                if not BACKENDS[backend][1]:
                    cells += [""] * (len(ns) - 1)
                rows.append([short, config, backend, *cells])
    if len(games) == 1:  # one game: no game column
        header, rows = header[1:], [r[1:] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        lines = [
            "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip() for r in [header, *rows]
        ]
    return "\n".join(lines)


def plot_report(report, path: str) -> None:
    """Frames/s vs num_envs: a line per backend, limits dashed; a panel per (game, config).

    L is the median of the run's limit readings for that game (:func:`run_limit`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = report["settings"]
    ns = settings["num_envs"]
    panels = [
        (game, config)
        for game in _games(report)
        for config in settings["configs"]
        if any(r["config"] == config for r in _rows(report, game))
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (game, config) in zip(axes[0], panels):
        for backend, style in (("limit", "--"), ("limit-ale", "-.")):
            limit = run_limit(report, game, backend)
            if limit:
                name = "L" if backend == "limit" else "L_ale"
                ax.axhline(limit, color="black", linestyle=style, label=f"{name} ({limit:,.0f})")
        for backend in settings["backends"]:
            if backend in LIMITS:
                continue  # drawn above
            if not BACKENDS[backend][1]:
                y = _figure(report, config, backend, None, game)
                if y:
                    ax.axhline(y, color="gray", linestyle=":", label=f"{backend} ({y:,.0f})")
            else:
                ys = [_figure(report, config, backend, n, game) for n in ns]
                pts = [(n, y) for n, y in zip(ns, ys) if y]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=backend, linewidth=2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("num_envs")
        ax.set_ylabel("emulator frames/s (agent steps x frameskip)")
        ax.set_title(f"{game} - {config}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    machine = report["machine"]
    fig.suptitle(f"{machine['cpu']}, {machine['cores']} cores", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``fastretro bench [options]``."""
    parser = argparse.ArgumentParser(prog="fastretro bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--game",
        nargs="+",
        default=[DEFAULT_GAME],
        help="stable-retro game IDs (Atari: Pong or Pong-Atari2600-v0)",
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help=f"configurations among {list(CONFIGS)}; default: each game's family's",
    )
    parser.add_argument("--num-envs", nargs="+", type=int, default=list(DEFAULT_NUM_ENVS))
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        help=f"backends among {list(BACKENDS)}; default: each game's family's",
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
    from fastretro.runtime.games import game_id as full_id  # "Pong": Pong-Atari2600-v0

    try:
        report = run_bench(
            [full_id(g) for g in args.game],
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
        f"\n{', '.join(_games(report))} on {m['cpu']} ({m['cores']} cores), "
        f"{args.seconds:g} s per run{repeats if args.repeat > 1 else ''}"
        ". Frames = agent steps x frameskip; L = cores x bare em.step(),"
        " the median of the run's limit readings (one per config and round; the limit rows show"
        " their spread: the machine's noise); E = frames/s / L_same, L_same = min(envs, cores)"
        " x the inprocess row (the same work in one process, no pool); E_lean: against the lean"
        " row instead (the core's own work alone, a minimal stable-retro loop);"
        " L_ale = cores x ALE's"
        " bare act() (Atari); fastretro skips drawing frames no observation uses and the FM"
        " chip's sound, fastretro-drawn does all the core's work, as L does."
    )
    print(format_table(report, markdown=args.markdown))
    failed = [r for r in report["results"] if r["error"]]
    for r in failed:
        print(f"failed: {r['game']} {r['config']} {r['backend']} x{r['num_envs']}: {r['error']}")
    if args.out:
        print(
            f"\nwrote {os.path.join(args.out, 'bench.json')}"
            + ("" if args.no_plot else f" and {os.path.join(args.out, 'bench.png')}")
        )
    return 1 if failed else 0
