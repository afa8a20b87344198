"""PPO2 under the standard Atari protocol: learning curves of Breakout and Pong beside random.

``train`` runs ``fastretro ppo --preset atari`` on a game (5M frames by default; the acceptance
reads the mean return of the last 100 episodes); ``random`` measures a uniformly random agent
over the same 18 actions on the same env (``EnvConfig.atari``); ``plot`` draws
``bench/atari_ppo_learning.png`` from the run folders and prints one JSON line with each
game's figures: frames, wall-clock, the last 100 episodes' mean, random's mean, and the first
frame count at which the mean of 100 passed the target.

Run::

    python bench/bench_atari_ppo.py train --game Breakout --run-dir runs/ppo-breakout
    python bench/bench_atari_ppo.py random --game Breakout --episodes 100
    python bench/bench_atari_ppo.py plot --runs runs/ppo-breakout runs/ppo-pong \
        --random Breakout=1.4 Pong=-20.3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys

import numpy as np

from fastretro.tools.bench import machine_info

HERE = os.path.dirname(os.path.abspath(__file__))


def train(args) -> None:
    cmd = [sys.executable, "-m", "fastretro", "ppo", "--preset", "atari", "--game", args.game,
           "--total-frames", str(args.frames), "--run-dir", args.run_dir, "--json"]  # fmt: skip
    subprocess.run(cmd, check=True)


def random_agent(args) -> None:
    import fastretro

    env = fastretro.atari_env(
        args.game, args.num_envs, autoreset_mode="same_step", actions=args.actions
    )
    returns, running = [], np.zeros(args.num_envs)
    env.action_space.seed(0)
    env.reset(seed=0)
    frames = 0
    try:
        while len(returns) < args.episodes:
            _, rew, term, trunc, _ = env.step(env.action_space.sample())
            frames += 4 * args.num_envs
            running += rew
            for i in np.flatnonzero(term | trunc):
                returns.append(float(running[i]))
                running[i] = 0.0
    finally:
        env.close()
    print(
        json.dumps(
            {
                "bench": "atari_random",
                "game": args.game,
                "actions": args.actions,
                "episodes": len(returns),
                "frames": frames,
                "mean": float(np.mean(returns)),
                "sd": float(np.std(returns)),
            }
        )
    )


def _monitor(run_dir: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Frames and return of each episode, and the wall-clock seconds at the last one."""
    with open(os.path.join(run_dir, "monitor.csv")) as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    frames = np.array([float(r["frames"]) for r in rows])
    return frames, np.array([float(r["r"]) for r in rows]), float(rows[-1]["t"]) if rows else 0.0


def plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    randoms = dict(item.split("=") for item in args.random)
    fig, axes = plt.subplots(1, len(args.runs), figsize=(6 * len(args.runs), 4.2), squeeze=False)
    summary = []
    for ax, run in zip(axes[0], args.runs):
        frames, returns, seconds = _monitor(run)
        with open(os.path.join(run, "progress.csv")) as f:
            progress = list(csv.DictReader(f))
        short = next((g for g in randoms if g.lower() in os.path.basename(run).lower()), None)
        rnd = float(randoms[short]) if short else None
        mean100 = np.array([returns[max(0, i - 99) : i + 1].mean() for i in range(len(returns))])
        target = (10.0 if short == "Breakout" else rnd + 5.0) if rnd is not None else None
        passed = next(
            (int(frames[i]) for i in range(99, len(frames)) if mean100[i] >= target), None
        )
        ax.scatter(frames, returns, s=2, alpha=0.2, label="episodes")
        ax.plot(frames, mean100, label="PPO2, mean of 100 episodes", linewidth=2)
        if rnd is not None:
            ax.axhline(rnd, color="gray", linestyle="--", label=f"random {rnd:g}")
            ax.axhline(target, color="gray", linestyle=":", label=f"target {target:g}")
        ax.set_title(
            f"{short or run}: PPO2, standard protocol ({frames[-1]:,.0f} frames, "
            f"{seconds / 3600:.1f} h)",
            fontsize=10,
        )
        ax.set_xlabel("emulator frames")
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        summary.append(
            {
                "run": run,
                "game": short,
                "frames": int(float(progress[-1]["frames"])),
                "seconds": round(seconds),
                "episodes": len(returns),
                "last100_mean": float(returns[-100:].mean()),
                "random_mean": rnd,
                "target": target,
                "target_first_passed_at_frames": passed,
            }
        )
    machine = machine_info()
    fig.suptitle(f"{machine['cpu']}, {machine['cores']} cores", fontsize=9)
    fig.tight_layout()
    out = os.path.join(HERE, "atari_ppo_learning.png")
    fig.savefig(out, dpi=110)
    print(json.dumps({"bench": "atari_ppo", "runs": summary, "png": out}))


def main() -> None:
    """train / random / plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train")
    t.add_argument("--game", required=True)
    t.add_argument("--run-dir", required=True)
    t.add_argument("--frames", type=int, default=5_000_000)
    r = sub.add_parser("random")
    r.add_argument("--game", required=True)
    r.add_argument("--episodes", type=int, default=100)
    r.add_argument("--num-envs", type=int, default=8)
    r.add_argument("--actions", default="ale_full", help="ale_full (the protocol's) or ale_minimal")
    p = sub.add_parser("plot")
    p.add_argument("--runs", nargs="+", required=True)
    p.add_argument("--random", nargs="+", default=[], help="GAME=MEAN, e.g. Breakout=1.4")
    args = parser.parse_args()
    {"train": train, "random": random_agent, "plot": plot}[args.mode](args)


if __name__ == "__main__":
    main()
