"""``fastretro plot RUN_DIR``: the learning curve of a run (its monitor.csv) as a PNG."""

from __future__ import annotations

import argparse
import csv
import glob
import os

import numpy as np

from fastretro.errors import InvalidArgumentError


def read_monitor(path: str) -> dict[str, np.ndarray]:
    """Columns of an SB3-format monitor.csv (a ``#{json}`` line, then ``r,l,t[,...]``)."""
    with open(path, newline="") as f:
        first = f.readline()
        if not first.startswith("#"):
            f.seek(0)
        rows = list(csv.DictReader(f))
    if rows and not {"r", "l"} <= set(rows[0]):
        raise InvalidArgumentError(f"{path} is not a monitor.csv (expected columns r, l, t)")
    names = list(rows[0]) if rows else ["r", "l", "t"]
    return {k: np.array([float(r[k]) for r in rows]) for k in names}


def learning_curve(
    run_dir: str,
    out: str | None = None,
    window: int = 20,
    baseline: float | None = None,
    frameskip: int = 4,
    title: str | None = None,
    baseline_label: str = "baseline",
) -> str:
    """Draw episode reward (and its rolling mean) against emulator frames; return the PNG path.

    Reads every monitor.csv under ``run_dir``. Frames come from the ``frames`` column where the
    run wrote one (``fastretro ppo`` does), else from cumulative episode lengths x
    ``frameskip``. ``baseline`` draws a horizontal line (e.g. a random agent's mean) named
    ``baseline_label``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = sorted(glob.glob(os.path.join(run_dir, "**", "monitor.csv"), recursive=True))
    if not paths:
        raise InvalidArgumentError(f"No monitor.csv under {run_dir!r}")
    if window < 1:
        raise InvalidArgumentError(f"Expected window >= 1, got {window}")
    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = 0
    for path in paths:
        m = read_monitor(path)
        if not len(m["r"]):
            continue
        x = m["frames"] if "frames" in m else np.cumsum(m["l"]) * frameskip
        label = os.path.relpath(os.path.dirname(path), run_dir)
        label = "" if label == "." else f"{label}: "
        ax.plot(x, m["r"], ".", alpha=0.25, markersize=3)
        w = min(window, len(m["r"]))
        rolling = np.convolve(m["r"], np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], rolling, label=f"{label}mean of {w} episodes")
        plotted += 1
    if not plotted:
        raise InvalidArgumentError(f"The monitor.csv files under {run_dir!r} hold no episodes")
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label=f"{baseline_label} {baseline:g}")
    ax.set_xlabel("emulator frames")
    ax.set_ylabel("episode reward")
    ax.set_title(title or os.path.basename(os.path.abspath(run_dir)))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out = out or os.path.join(run_dir, "curve.png")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """``fastretro plot``: draw a run's learning curve."""
    parser = argparse.ArgumentParser(
        prog="fastretro plot", description="Draw the learning curve of a run folder to PNG."
    )
    parser.add_argument("run_dir")
    parser.add_argument("--out", help="PNG path (default RUN_DIR/curve.png)")
    parser.add_argument("--window", type=int, default=20, help="episodes in the rolling mean")
    parser.add_argument("--baseline", type=float, help="draw a reference line (e.g. random)")
    parser.add_argument("--baseline-label", default="baseline", help="the line's name, e.g. random")
    parser.add_argument("--title", help="default: the folder's name")
    args = parser.parse_args(argv)
    try:
        out = learning_curve(
            args.run_dir,
            args.out,
            args.window,
            args.baseline,
            title=args.title,
            baseline_label=args.baseline_label,
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    print(f"wrote {out}")
    return 0
