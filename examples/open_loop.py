"""Score open-loop action scripts, one per env, with sequences: one round trip per script.

An agent that decides a stretch of actions at once (a search over action scripts, JERK's moves,
replaying a plan) need not wake the parent at every step: ``step_sequences`` hands every env
its script and each worker runs it step after step, stopping at the end of the episode. Each
step is exactly what ``step`` would do with that action. This script draws random scripts of
"fire while moving" presses, scores them in a few calls, and prints the best.

Run: ``python examples/open_loop.py [--num-envs 4] [--length 300] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastretro import DEFAULT_GAME, VecRetroEnv

# Airstriker's ship: B fires; the scripts mix moving and firing.
ACTIONS = [["B"], ["LEFT", "B"], ["RIGHT", "B"], ["UP", "B"], ["DOWN", "B"], []]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--length", type=int, default=300, help="steps per script")
    parser.add_argument("--rounds", type=int, default=3, help="batches of scripts to score")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    best_return, best_script = -np.inf, None
    with VecRetroEnv(
        DEFAULT_GAME,
        args.num_envs,
        actions=ACTIONS,
        frameskip=4,
        observe=False,  # scripts do not look at the screen
        sequence_length=args.length,
        autoreset_mode="same_step",
    ) as env:
        for round_ in range(args.rounds):
            env.reset(seed=round_)  # every script starts at the level's start
            scripts = rng.integers(0, len(ACTIONS), (args.num_envs, args.length))
            start = time.perf_counter()
            _, returns, terminated, _, infos = env.step_sequences(
                scripts, np.full(args.num_envs, args.length)
            )
            wall = time.perf_counter() - start
            steps = infos["sequence_steps"]
            print(
                f"round {round_}: returns {returns.tolist()}, steps run {steps.tolist()} "
                f"({int(terminated.sum())} died), {steps.sum() / wall:,.0f} steps/s"
            )
            i = int(np.argmax(returns))
            if returns[i] > best_return:
                best_return, best_script = returns[i], scripts[i, : steps[i]]
    print(f"best script: return {best_return:.0f} over {len(best_script)} steps")


if __name__ == "__main__":
    main()
