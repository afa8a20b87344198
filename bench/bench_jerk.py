"""JERK: the original single-env agent vs fastretro's JERK on the pool, same timestep budget.

The yardstick is a faithful port of openai/retro-baselines agents/jerk_agent.py (its
TrackedEnv, move, exploit and main loop, with the same constants) on one plain stable-retro env
with the contest's frame timing (StochasticFrameSkip 4 frames, sticky 0.25) and a 4,500-step
limit, run in its own process. fastretro's JERK (fastretro/agents/jerk.py) runs the same
budget on a pool without frames. Both report steps/s and the contest's score: the mean
episode reward over all episodes in the budget. Prints JSON lines and a markdown table.

fastretro's JERK runs once per ``--replay-from`` choice: ``reset`` replays the best sequence
from reset as the original does; ``auto`` loads the state saved where it did best, where the
scenario and the driver allow (Airstriker's scenario does; only ``--driver lock-step`` can load
states). ``--driver``: open-loop (the default: each env runs whole moves and replays in its
worker), lock-step or async-halves (the parent picks every step's actions).

Run: ``python bench/bench_jerk.py [--timesteps 30000] [--seeds 0 1 2] [--num-envs 2]
[--replay-from reset auto] [--driver open-loop|lock-step|async-halves]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import cores


def original_jerk(game: str, timesteps: int, seed: int) -> dict:
    """retro-baselines' jerk_agent.py main(), on one env, until ``timesteps`` steps.

    The port lives in bench_jerk_parity.py (one copy of it); this keeps this script's fields.
    """
    from bench_jerk_parity import original_jerk as port

    row = port(game, timesteps, seed)
    return {
        "agent": "original",
        "seed": seed,
        "timesteps": row["timesteps"],
        "steps_per_s": row["steps_per_s"],
        "episodes": row["episodes"],
        "mean_episode_reward": row["mean_episode_reward"] if row["episodes"] else None,
    }


def fastretro_jerk(
    game: str,
    timesteps: int,
    seed: int,
    num_envs: int,
    replay_from: str,
    async_batches: bool,
    open_loop: bool,
) -> dict:
    """fastretro's JERK with the same budget and the original's exploit schedule."""
    from fastretro.agents.jerk import JerkConfig, run

    # The default TOTAL_TIMESTEPS (1e6) is the original's exploit schedule; the budget is apart.
    config = JerkConfig(seed=seed, replay_from=replay_from)
    result = run(
        game,
        num_envs=num_envs,
        config=config,
        progress=False,
        timesteps=timesteps,
        async_batches=async_batches,
        open_loop=open_loop,
    )
    halves = ", async halves" if async_batches else ", open-loop moves" if open_loop else ""
    return {
        "agent": f"fastretro x{num_envs}{halves}, replay from {result['replay_path']}",
        "seed": seed,
        "timesteps": result["timesteps"],
        "steps_per_s": result["steps_per_s"],
        "episodes": result["episodes"],
        "mean_episode_reward": result["mean_episode_reward"],
        "replays": result["replays"],
        "restores": result["restores"],
    }


def main() -> None:
    """Run both agents for every seed, each in a fresh process; print lines and a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--timesteps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument(
        "--replay-from",
        nargs="+",
        choices=("auto", "state", "reset"),
        default=["auto"],
        help="fastretro's exploit episodes: one run per choice (reset: the original's way)",
    )
    parser.add_argument(
        "--driver",
        choices=("open-loop", "lock-step", "async-halves"),
        default="open-loop",
        help="how fastretro drives its pool: each move or replay run whole in its worker "
        "(open-loop, the default), every step in lock-step, or every step in two async halves "
        "(open-loop and async-halves replay from reset only)",
    )
    parser.add_argument(
        "--async-batches",
        action="store_true",
        help="the same as --driver async-halves (kept for the commands in bench/results/)",
    )
    args = parser.parse_args()
    if args.async_batches:
        args.driver = "async-halves"
    rows = []
    ctx = mp.get_context("spawn")
    for seed in args.seeds:
        for job in ("original", *args.replay_from):
            with ProcessPoolExecutor(1, mp_context=ctx) as ex:
                if job == "original":
                    row = ex.submit(original_jerk, args.game, args.timesteps, seed).result()
                else:
                    row = ex.submit(
                        fastretro_jerk,
                        args.game,
                        args.timesteps,
                        seed,
                        args.num_envs,
                        job,
                        args.driver == "async-halves",
                        args.driver == "open-loop",
                    ).result()
            rows.append(row)
            print(json.dumps({"bench": "jerk", **row}), flush=True)
    print(
        f"\n{args.game}, contest timing, {args.timesteps} timesteps, seeds {args.seeds}, "
        f"{cores()} cores"
    )
    print(
        "| agent | steps/s (mean +- sd) | x original | mean episode reward (mean +- sd) "
        "| per seed | episodes |"
    )
    print("|---|---|---|---|---|---|")
    base = np.mean([r["steps_per_s"] for r in rows if r["agent"] == "original"])
    for agent in dict.fromkeys(r["agent"] for r in rows):
        mine = [r for r in rows if r["agent"] == agent]
        sps = np.array([r["steps_per_s"] for r in mine])
        rew = np.array([r["mean_episode_reward"] or 0.0 for r in mine])
        eps = [r["episodes"] for r in mine]
        print(
            f"| {agent} | {sps.mean():,.0f} +- {sps.std():,.0f} | {sps.mean() / base:.2f}x | "
            f"{rew.mean():,.1f} +- {rew.std():,.1f} | {', '.join(f'{x:.0f}' for x in rew)} "
            f"| {eps} |"
        )


if __name__ == "__main__":
    main()
