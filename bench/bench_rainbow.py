"""fastretro's Rainbow client: acting modes' speed; learning on Airstriker vs random and PPO2.

``speed``: short runs of the ``fast`` config with the emulators stepping while the learner
trains, two ways: lock-step (``step_async``, gradient steps, ``step_wait``) and an async pool
(``env_batch = num_envs / 2``: ``send``/``recv`` on the first half to finish), with 1 and 2
torch threads, each in a fresh process, in alternating rounds (the machine is shared:
alternating spreads its load over every variant).
The rate is read between the first progress row after learning started and the last, so the
warm-up without gradient steps is not counted.

``learn``: a uniformly random agent over the same 10 actions on the same env (Airstriker, 4
frames per step, sticky 0.25, 4,500-step episodes), then Rainbow's ``fast`` preset for 1M
emulator frames; the mean of the last 50 episodes against random's; a PNG of Rainbow's learning
curve beside PPO2's (``--ppo-run``: a ``fastretro ppo`` run folder, drawn when it has a
monitor.csv) and random's level.

``plot``: the PNG again from finished runs (``--run-name``, ``--ppo-run``, ``--random-mean``);
``random``: the random agent alone (what ``learn`` measures first).

Run: ``python bench/bench_rainbow.py speed`` and ``python bench/bench_rainbow.py learn``
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing as mp
import os
import platform
import time

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import cores

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out")


def _progress(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "progress.csv")) as f:
        return list(csv.DictReader(f))


def _monitor(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(episode rewards, frames at each episode's end) of a run's monitor.csv."""
    with open(os.path.join(run_dir, "monitor.csv")) as f:
        f.readline()
        rows = list(csv.DictReader(f))
    return np.array([float(r["r"]) for r in rows]), np.array([int(r["frames"]) for r in rows])


# -- speed -----------------------------------------------------------------------------------


def _speed_run(game: str, values: dict, seconds: float, queue) -> None:
    # rainbow before torch: common.py sets torch's OpenMP spin policy, read when torch loads.
    from fastretro.agents.rainbow import PRESETS, RainbowConfig, train
    from fastretro.runtime.stats import Stopwatch

    run_dir = os.path.join(OUT, "rainbow-speed")
    cfg = RainbowConfig(game=game, **{**PRESETS["fast"], **values})
    watch = Stopwatch()
    try:
        train(cfg, run_dir, progress=False, watch=watch, max_seconds=seconds)
        rows = [r for r in _progress(run_dir) if int(r["updates"]) > 0]
        if len(rows) < 2:
            raise RuntimeError(f"fewer than 2 progress rows after learning started in {seconds} s")
        a, b = rows[0], rows[-1]
        dt = float(b["time/seconds"]) - float(a["time/seconds"])
        queue.put(
            {
                "frames_per_s": (int(b["frames"]) - int(a["frames"])) / dt,
                "updates_per_s": (int(b["updates"]) - int(a["updates"])) / dt,
                "measured_s": dt,
                "phases_s": {k: round(v, 1) for k, v in watch.seconds.items()},
            }
        )
    except Exception as exc:  # noqa: BLE001 - reported by the parent, which then goes on
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def speed(args) -> None:
    ctx = mp.get_context("spawn")
    half = max(1, args.num_envs // 2)
    variants = {}
    for threads in [int(t) for t in args.torch_threads.split(",")]:
        variants[f"lock-step, {threads} torch thread(s)"] = dict(env_batch=0, torch_threads=threads)
        variants[f"async (env_batch {half}), {threads} torch thread(s)"] = dict(
            env_batch=half, torch_threads=threads
        )
    common = dict(num_envs=args.num_envs, learning_starts=args.learning_starts, log_every=2_000)
    results: dict[str, list] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name, values in variants.items():
            queue = ctx.Queue()
            proc = ctx.Process(
                target=_speed_run, args=(args.game, {**common, **values}, args.seconds, queue)
            )
            proc.start()
            out = queue.get(timeout=3600)
            proc.join()
            out.update(variant=name, round=r, load_1min=round(os.getloadavg()[0], 2))
            print(json.dumps({"bench": "rainbow_speed_run", **out}), flush=True)
            if "error" not in out:
                results[name].append(out)
    print(
        f"\n{args.game}, preset fast, {args.num_envs} envs, {platform.machine()}, {cores()} "
        f"cores, {args.rounds} rounds of {args.seconds:.0f} s per variant"
    )
    print("| acting | frames/s (median) | gradient steps/s (median) | every round's frames/s |")
    print("|---|---|---|---|")
    summary = {}
    for name, runs in results.items():
        if not runs:
            print(f"| {name} | failed | | |")
            continue
        fps = [x["frames_per_s"] for x in runs]
        ups = [x["updates_per_s"] for x in runs]
        summary[name] = {
            "frames_per_s": float(np.median(fps)),
            "updates_per_s": float(np.median(ups)),
        }
        print(
            f"| {name} | {np.median(fps):,.0f} | {np.median(ups):.2f} | "
            f"{', '.join(f'{v:,.0f}' for v in fps)} |"
        )
    print(json.dumps({"bench": "rainbow_speed", "num_envs": args.num_envs, **summary}))


# -- learn -----------------------------------------------------------------------------------


def _random_agent(cfg, episodes: int, seed: int) -> tuple[list[float], int]:
    """Uniformly random actions on Rainbow's own pool until ``episodes`` episodes end."""
    from fastretro.agents.rainbow import make_pool

    pool = make_pool(cfg)
    rng = np.random.default_rng(seed)
    pool.reset(seed=seed)
    ep = np.zeros(cfg.num_envs)
    rewards: list[float] = []
    frames = 0
    try:
        while len(rewards) < episodes:
            n = pool.single_action_space.n
            _, r, term, trunc, _ = pool.step(rng.integers(0, n, cfg.num_envs))
            frames += cfg.num_envs * cfg.frameskip
            ep += r
            for i in np.flatnonzero(term | trunc):
                rewards.append(float(ep[i]))
                ep[i] = 0.0
    finally:
        pool.close()
    return rewards, frames


def _smoothed(rewards: np.ndarray, frames: np.ndarray, window: int):
    w = min(window, len(rewards))
    return frames[w - 1 :], np.convolve(rewards, np.ones(w) / w, mode="valid")


def _plot(path, rainbow_dir, ppo_dir, random_mean, window, title) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    r, f = _monitor(rainbow_dir)
    ax.plot(f, r, ".", color="C0", alpha=0.2, markersize=3)
    ax.plot(*_smoothed(r, f, window), color="C0", label=f"Rainbow (fast), mean of {window}")
    drew_ppo = False
    if ppo_dir and os.path.exists(os.path.join(ppo_dir, "monitor.csv")):
        r, f = _monitor(ppo_dir)
        if len(r):
            ax.plot(f, r, ".", color="C1", alpha=0.2, markersize=3)
            ax.plot(*_smoothed(r, f, window), color="C1", label=f"PPO2 (fast), mean of {window}")
            drew_ppo = True
    ax.axhline(random_mean, color="gray", linestyle="--", label=f"random {random_mean:.0f}")
    ax.axhline(
        2 * random_mean, color="gray", linestyle=":", label=f"2x random {2 * random_mean:.0f}"
    )
    ax.set_xlabel("emulator frames")
    ax.set_ylabel("episode reward")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return drew_ppo


def random_mode(args) -> None:
    """The random agent alone, on the env ``learn`` uses."""
    from fastretro.agents.rainbow import PRESETS, RainbowConfig

    cfg = RainbowConfig(game=args.game, seed=args.seed, **PRESETS["fast"])
    rewards, frames = _random_agent(cfg, args.random_episodes, args.seed)
    print(
        json.dumps(
            {
                "bench": "rainbow_learn_random",
                "mean": float(np.mean(rewards)),
                "std": float(np.std(rewards)),
                "episodes": len(rewards),
                "frames": frames,
                "num_envs": cfg.num_envs,
                "seed": args.seed,
            }
        )
    )


def plot(args) -> None:
    """Draw the PNG again from finished runs (after a PPO2 run, say); prints the figures."""
    run_dir = os.path.join(OUT, args.run_name)
    rewards, _ = _monitor(run_dir)
    drew_ppo = _plot(
        os.path.join(HERE, "rainbow_learning.png"),
        run_dir,
        args.ppo_run,
        args.random_mean,
        args.last,
        f"{args.game}: Rainbow vs PPO2, 1M frames, contest timing, 10 actions",
    )
    result = {
        "bench": "rainbow_learn_plot",
        "rainbow_run": os.path.relpath(run_dir, HERE),
        f"mean_last{args.last}": float(rewards[-args.last :].mean()),
        "random_mean": args.random_mean,
        "ppo2_drawn": drew_ppo,
    }
    if drew_ppo:
        ppo_rewards, ppo_frames = _monitor(args.ppo_run)
        result[f"ppo2_mean_last{args.last}"] = float(ppo_rewards[-args.last :].mean())
        result["ppo2_frames"] = int(ppo_frames[-1])
    print(json.dumps(result))


def learn(args) -> None:
    from fastretro.agents.rainbow import PRESETS, RainbowConfig, train

    values = {**PRESETS["fast"], **json.loads(args.override)}
    cfg = RainbowConfig(game=args.game, total_frames=args.frames, seed=args.seed, **values)
    if args.random_mean is None:
        rewards, frames = _random_agent(cfg, args.random_episodes, args.seed)
        random_mean = float(np.mean(rewards))
        random_source = (
            f"measured here: {len(rewards)} episodes, {frames:,} frames, sd {np.std(rewards):.1f}"
        )
    else:
        random_mean, random_source = args.random_mean, args.random_source
    print(
        json.dumps({"bench": "rainbow_learn_random", "mean": random_mean, "source": random_source})
    )

    run_dir = os.path.join(OUT, args.run_name)
    t0 = time.time()
    summary = train(cfg, run_dir, progress=not args.quiet)
    wall = time.time() - t0
    rewards, ep_frames = _monitor(run_dir)
    last = rewards[-args.last :]
    rows = _progress(run_dir)
    print("\n| frames | episodes | mean of the last 50 episodes | gradient steps | frames/s |")
    print("|---|---|---|---|---|")
    step = max(1, len(rows) // 20)
    for row in rows[step - 1 :: step]:
        fr = int(row["frames"])
        done = rewards[ep_frames <= fr]
        mean50 = f"{done[-50:].mean():.1f}" if len(done) else "-"
        print(
            f"| {fr:,} | {row['episodes']} | {mean50} | {row['updates']} | "
            f"{float(row['time/frames_per_s']):,.0f} |"
        )
    ppo_mean = None
    if args.ppo_run and os.path.exists(os.path.join(args.ppo_run, "monitor.csv")):
        ppo_rewards, _ = _monitor(args.ppo_run)
        ppo_mean = float(ppo_rewards[-args.last :].mean()) if len(ppo_rewards) else None
    png = os.path.join(HERE, "rainbow_learning.png")
    drew_ppo = _plot(
        png,
        run_dir,
        args.ppo_run,
        random_mean,
        args.last,
        f"{args.game}: Rainbow vs PPO2, 1M frames, contest timing, 10 actions",
    )
    result = {
        "bench": "rainbow_learn",
        "game": args.game,
        "frames": summary["frames"],
        "seconds": round(wall, 1),
        "frames_per_s": summary["frames_per_s"],
        "episodes": summary["episodes"],
        "updates": summary["updates"],
        f"mean_last{args.last}": float(last.mean()),
        "random_mean": random_mean,
        "random_source": random_source,
        "ratio": float(last.mean()) / random_mean,
        f"ppo2_mean_last{args.last}": ppo_mean,
        "ppo2_drawn": drew_ppo,
        "png": os.path.relpath(png, HERE),
        "machine": f"{platform.machine()}, {cores()} cores",
        "config": {k: v for k, v in values.items()},
    }
    print(
        f"\nRainbow after {summary['frames']:,} frames ({wall / 60:.0f} min): mean of the last "
        f"{args.last} episodes {last.mean():.1f} = {result['ratio']:.2f}x random "
        f"({random_mean:.1f})"
        + (f"; PPO2 {ppo_mean:.1f}" if ppo_mean is not None else "; no PPO2 run drawn")
    )
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["speed", "learn", "plot", "random"])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    speed_args = parser.add_argument_group("speed")
    speed_args.add_argument("--num-envs", type=int, default=8)
    speed_args.add_argument("--seconds", type=float, default=120.0, help="per run")
    speed_args.add_argument("--rounds", type=int, default=2)
    speed_args.add_argument("--learning-starts", type=int, default=2_000)
    speed_args.add_argument("--torch-threads", default="1,2", help="thread counts to compare")
    learn_args = parser.add_argument_group("learn")
    learn_args.add_argument("--frames", type=int, default=1_000_000)
    learn_args.add_argument("--last", type=int, default=50, help="episodes averaged at the end")
    learn_args.add_argument(
        "--override", default="{}", help='JSON of config values over the fast preset: {"n_step": 5}'
    )
    learn_args.add_argument("--random-episodes", type=int, default=40)
    learn_args.add_argument(
        "--random-mean", type=float, help="reuse this random agent's mean instead of measuring"
    )
    learn_args.add_argument("--random-source", default="", help="where --random-mean comes from")
    learn_args.add_argument("--run-name", default="rainbow-learn", help="bench/out/ folder")
    learn_args.add_argument(
        "--ppo-run", default=os.path.join(OUT, "ppo2-fast-1m"), help="a fastretro ppo run folder"
    )
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.what == "plot" and args.random_mean is None:
        parser.error("plot needs --random-mean (the learn run's random agent)")
    {"speed": speed, "learn": learn, "plot": plot, "random": random_mode}[args.what](args)


if __name__ == "__main__":
    main()
