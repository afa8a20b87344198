"""World Models on Airstriker, end to end: every stage timed, then the controller vs random.

Runs ``collect``, ``vae``, ``mdn`` and ``evolve`` (fastretro/agents/world_models/) in one run
folder with a preset (``airstriker`` by default: sized for ~1.5 hours on 2 cores), then scores
on the same env settings (action set, frame timing, episode limit):

- a uniformly random agent over the same actions (``fastretro.contest.evaluate.RandomAgent``);
- the evolved controller: the best candidate seen during evolution, and CMA-ES's mean, each
  on fresh seeds.

The headline ratio is the best candidate's mean return over the random agent's. The stage
summaries carry the pool's frames/s during ``collect`` and ``evolve`` (frames = agent steps x
frameskip, summed over envs) with the pool configuration, to compare with ``fastretro bench``.
The three pictures are copied to ``bench/world_models_{reconstructions.png,dream.gif,
evolution.png}`` (the evolution plot redrawn with the random agent's mean). Prints progress,
then one JSON line.

Run: ``nice -n 10 python bench/bench_world_models.py [--run-dir DIR] [--preset airstriker]
[--evolve-seconds S] [--eval-episodes 24] [--mean-episodes 12] [--random-episodes 64] | tee
bench/results/DATE-world-models.txt``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import time

import numpy as np

from fastretro.agents import world_models as wm

HERE = os.path.dirname(os.path.abspath(__file__))


def _machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        lscpu = ""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "lscpu_head": lscpu.splitlines()[:10],
        "loadavg_at_start": os.getloadavg(),
    }


def _stage(name: str, fn, *args, **kwargs) -> dict:
    t0 = time.perf_counter()
    summary = fn(*args, **kwargs)
    wall = time.perf_counter() - t0
    summary = {**summary, "wall_s": round(wall, 1)}
    print(f"[{time.strftime('%H:%M:%S')}] {wm.describe_summary(summary)} ({wall:.0f} s)")
    print(json.dumps(summary), flush=True)
    return summary


def _scores(returns) -> dict:
    r = np.asarray(returns, float)
    return {
        "episodes": len(r),
        "mean": round(float(r.mean()), 2),
        "sd": round(float(r.std(ddof=1)), 2) if len(r) > 1 else None,
        "median": float(np.median(r)),
        "min": float(r.min()),
        "max": float(r.max()),
    }


def main() -> None:
    """Run every stage, score the controller and the random agent, print one JSON line."""
    import cma

    from fastretro.contest.evaluate import RandomAgent

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=os.path.join(HERE, "out", "world_models"))
    parser.add_argument("--preset", default="airstriker", choices=sorted(wm.PRESETS))
    parser.add_argument("--evolve-seconds", type=float, default=None)
    parser.add_argument("--generations", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=24, help="for the best candidate")
    parser.add_argument("--mean-episodes", type=int, default=12, help="for CMA-ES's mean")
    parser.add_argument("--random-episodes", type=int, default=64)
    parser.add_argument("--eval-envs", type=int, default=8)
    parser.add_argument("--eval-seed", type=int, default=10_000, help="seeds unseen in training")
    parser.add_argument("--no-copy", action="store_true", help="leave the pictures in the run")
    args = parser.parse_args()

    overrides = {}
    if args.evolve_seconds is not None:
        overrides["evolve_seconds"] = args.evolve_seconds
    if args.generations is not None:
        overrides["generations"] = args.generations
    cfg = wm.resolve_config(args.run_dir, args.preset, **overrides)
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] World Models bench, preset {args.preset}")
    print("settings:", json.dumps(dict(vars(cfg))), flush=True)
    machine = _machine()
    print("machine:", json.dumps(machine), flush=True)

    start = time.perf_counter()
    stages = {
        "collect": _stage("collect", wm.collect, cfg, args.run_dir, progress=False),
        "vae": _stage("vae", wm.train_vae, cfg, args.run_dir, progress=False),
        "mdn": _stage("mdn", wm.train_mdn, cfg, args.run_dir, progress=False),
        "evolve": _stage("evolve", wm.evolve, cfg, args.run_dir, progress=False),
    }

    t0 = time.perf_counter()
    random_returns = wm.run_episodes(
        cfg, RandomAgent, args.random_episodes, num_envs=args.eval_envs, seed=args.eval_seed
    )
    random_s = time.perf_counter() - t0
    random = {**_scores(random_returns), "wall_s": round(random_s, 1)}
    print(f"random agent: {json.dumps(random)}", flush=True)
    controllers = {}
    for which in ("best", "mean"):
        t0 = time.perf_counter()
        returns = wm.play(
            args.run_dir,
            episodes=args.eval_episodes if which == "best" else args.mean_episodes,
            num_envs=args.eval_envs,
            seed=args.eval_seed,
            which=which,
            cfg=cfg,
        )
        controllers[which] = {**_scores(returns), "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"controller ({which}): {json.dumps(controllers[which])}", flush=True)

    ckpt = wm.load_controller(os.path.join(args.run_dir, "controller.pt"), cfg)
    pictures = {
        "reconstructions": os.path.join(args.run_dir, "reconstructions.png"),
        "dream": os.path.join(args.run_dir, "dream.gif"),
        "evolution": os.path.join(args.run_dir, "evolution.png"),
    }
    wm.plot_evolution(ckpt["history"], pictures["evolution"], baseline=random["mean"])
    if not args.no_copy:
        for name, src in pictures.items():
            dst = os.path.join(HERE, f"world_models_{os.path.basename(src)}")
            shutil.copyfile(src, dst)
            pictures[name] = os.path.relpath(dst, os.path.dirname(HERE))

    ratio = controllers["best"]["mean"] / random["mean"] if random["mean"] else None
    result = {
        "bench": "world_models",
        "preset": args.preset,
        "game": cfg.game,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "pycma": cma.__version__,
        "env": {
            "actions": cfg.resolved_actions(),
            "frameskip": cfg.frameskip,
            "sticky_prob": cfg.sticky_prob,
            "max_episode_steps": cfg.max_episode_steps,
            "frame_size": cfg.frame_size,
        },
        "stage_wall_s": {k: v["wall_s"] for k, v in stages.items()},
        "total_wall_s": round(time.perf_counter() - start, 1),
        "collect": {
            k: stages["collect"][k]
            for k in ("episodes_added", "steps", "frames", "frames_per_s", "pool_frames_per_s")
        },
        "vae": {k: stages["vae"][k] for k in ("frames_in_data", "frames_trained", "parameters")},
        "mdn": {k: stages["mdn"][k] for k in ("steps_in_data", "epochs", "parameters")},
        "evolve": {
            k: stages["evolve"][k]
            for k in (
                "generations_run",
                "parameters",
                "frames",
                "best_fitness",
                "best_generation",
                "frames_per_s",
                "pool_frames_per_s",
                "filler_steps",
            )
        },
        "pool_collect": stages["collect"]["pool"],
        "pool_evolve": stages["evolve"]["pool"],
        "random": random,
        "controller_best": controllers["best"],
        "controller_mean": controllers["mean"],
        "ratio_best_over_random": round(ratio, 3) if ratio is not None else None,
        "pictures": pictures,
        "machine": machine,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
