"""CleanRL's ppo_atari_envpool.py on EnvPool and on fastretro: the same script, same seeds.

The script is examples/clients/ppo_atari_envpool.py; for EnvPool its one changed line goes back
to ``import envpool``. Each (side, seed) run trains for ``--frames`` frames (agent steps x 4) with
``OMP_NUM_THREADS=1``; sides alternate within each seed, so a drift of the machine falls on
both. Output: one log per run and ``clients.json`` in ``--out``, a line per run, and a figure
of the learning curves (episodic return of whole games against frames).

    python bench/bench_clients.py --seeds 1 2 3 --frames 1000000 --out bench/results/DIR

A run whose result is already in ``--out`` (``{side}-seed{seed}.json``, written when the run
ends) is read back, not repeated, so an interrupted bench goes on where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "clients", "ppo_atari_envpool.py")
FASTRETRO_IMPORT = "import fastretro.envpool as envpool\n"
RETURN = re.compile(r"global_step=(\d+), episodic_return=([-\d.e+]+)")
SPS = re.compile(r"^SPS: (\d+)", re.M)


def script_for(side: str) -> str:
    """The client script for ``side``: fastretro's as shipped, EnvPool's with its import."""
    if side == "fastretro":
        return SCRIPT
    with open(SCRIPT) as f:
        source = f.read()
    assert FASTRETRO_IMPORT in source
    path = os.path.join(tempfile.mkdtemp(prefix="bench-clients-"), "ppo_atari_envpool.py")
    with open(path, "w") as f:
        f.write(source.replace(FASTRETRO_IMPORT, "import envpool\n"))
    return path


def run(side: str, seed: int, frames: int, env_id: str, out: str) -> dict:
    """One training run; returns its episodes, SPS readings and wall-clock time."""
    steps = frames // 4
    log_path = os.path.join(out, f"{side}-seed{seed}.log")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, script_for(side), "--env-id", env_id, "--seed", str(seed)]
            + ["--total-timesteps", str(steps), "--exp-name", f"{side}-seed{seed}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=out,
            env=env,
        )
    wall = time.time() - t0
    with open(log_path) as f:
        text = f.read()
    episodes = [(int(s), float(r)) for s, r in RETURN.findall(text)]
    sps = [int(v) for v in SPS.findall(text)]
    last100 = [r for _, r in episodes[-100:]]
    return {
        "side": side,
        "seed": seed,
        "frames": frames,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "episodes": episodes,
        "last100_mean": statistics.fmean(last100) if last100 else None,
        "sps_final": sps[-1] if sps else None,
    }


def plot(results: list[dict], path: str) -> None:
    """Each run's episodic return (a 20-game rolling mean) against frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = {"envpool": "tab:gray", "fastretro": "tab:blue"}
    for r in results:
        if not r["episodes"]:
            continue
        steps, returns = np.array(r["episodes"]).T
        k = min(20, len(returns))
        smooth = np.convolve(returns, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :] * 4, smooth, color=colours[r["side"]], alpha=0.8,
                label=f"{r['side']} seed {r['seed']}")  # fmt: skip
    ax.set_xlabel("frames (agent steps x 4)")
    ax.set_ylabel("episodic return (whole games, 20-game mean)")
    ax.set_title("CleanRL ppo_atari_envpool.py, Breakout-v5: EnvPool vs fastretro")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--env-id", default="Breakout-v5")
    parser.add_argument("--sides", nargs="+", default=["envpool", "fastretro"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--figure", default=os.path.join(ROOT, "bench", "clients_parity.png"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results = []
    for seed in args.seeds:
        for side in args.sides:
            done = os.path.join(args.out, f"{side}-seed{seed}.json")
            r = None
            if os.path.exists(done):
                with open(done) as f:
                    r = json.load(f)
                if (r["frames"], r["exit"]) != (args.frames, 0):
                    r = None  # another budget, or a failed run: run it again
            if r is None:
                r = run(side, seed, args.frames, args.env_id, os.path.abspath(args.out))
                with open(done, "w") as f:
                    json.dump(r, f)
            results.append(r)
            print(
                f"side={side} seed={seed} exit={r['exit']} episodes={len(r['episodes'])} "
                f"last100_mean={r['last100_mean']} sps={r['sps_final']} wall_s={r['wall_s']}",
                flush=True,
            )
            with open(os.path.join(args.out, "clients.json"), "w") as f:
                json.dump(results, f)
    plot(results, args.figure)
    for side in args.sides:
        means = [r["last100_mean"] for r in results if r["side"] == side]
        sps = [r["sps_final"] for r in results if r["side"] == side]
        print(f"{side}: last-100 means {means}; SPS {sps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
