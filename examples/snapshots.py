"""Snapshots: keep where each episode did best, and start later episodes from the best one.

A go-explore-style loop on a random agent: every env saves its emulator state at the step its
episode first reached its best return (``snapshot_best=True``); when an episode ends, the pool
hands that state over (``best_snapshot``), and ended envs continue from the best state seen so
far (``restore``) instead of from the level's start.

python examples/snapshots.py --steps 1500
"""

from __future__ import annotations

import argparse

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv


def main() -> None:
    """Random agent on 4 envs; ended episodes go on from the best state found so far."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--episode-steps", type=int, default=400)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    best = None  # the Snapshot with the highest return so far
    with VecRetroEnv(
        args.game,
        args.num_envs,
        frameskip=4,
        observe=False,  # this agent never looks; snapshots work with observations too
        max_episode_steps=args.episode_steps,
        autoreset_mode="same_step",
        snapshot_best=True,
    ) as env:
        env.reset(seed=0)
        for _ in range(args.steps):
            actions = rng.integers(0, 2, (args.num_envs, len(env.buttons)))
            actions[:, env.buttons.index("B")] = 1  # Airstriker: keep firing
            _, _, terminated, truncated, _ = env.step(actions)
            ended = np.flatnonzero(terminated | truncated)
            for i in ended:
                snap = env.best_snapshot(int(i))
                if best is None or snap.episode_return > best.episode_return:
                    best = snap
                    print(
                        f"best so far: return {best.episode_return:g} at step {best.episode_step}"
                    )
            if len(ended) and best is not None:
                # The ended envs were reset to the start; send them to the best state instead.
                env.restore({int(i): best for i in ended})
    if best is not None:
        print(f"best return {best.episode_return:g}, reached at step {best.episode_step}")


if __name__ == "__main__":
    main()
