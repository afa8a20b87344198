"""JERK parity: the original retro-baselines agent vs ``fastretro jerk``, same seeds and budgets.

The yardstick, :func:`original_jerk`, ports ``agents/jerk_agent.py`` of openai/retro-baselines
(https://github.com/openai/retro-baselines, MIT licence, Copyright (c) 2018 OpenAI): its
``TrackedEnv``, ``move``, ``exploit`` and ``main`` loop with the same constants
(``EXPLOIT_BIAS = 0.25``, ``TOTAL_TIMESTEPS = 1e6``, moves of 100 right / 70 left, jumps with
probability 0.1 held 4 steps). Where the original talked to the contest's remote env
(``gym_remote``), the port builds what that env was: ``stable_retro.make(game,
render_mode=None)``, the contest's sticky frame skip (4 frames, the previous action kept for
the first frame with probability 0.25: ``fastretro.tools.peers.StochasticFrameSkip``) and a
4,500-step limit, on one env in one process. The contest's server stopped the agent when the
budget was spent; here the port stops at the budget's last step and, as fastretro does, counts
only the episodes that ended within it. Its random draws come from ``random.seed(seed)`` (the
original's module ``random``) and the wrapper's stickiness from ``default_rng(seed)``.

``fastretro jerk`` (:func:`fastretro.agents.jerk.run`) runs the same budget with its defaults
(or ``--num-envs`` / ``--replay-from`` / ``--nondeterministic`` to bench another setting; each
``--replay-from`` value is one more agent). With its defaults it draws the same values in the
same places on the same sticky frames, so its run of a seed is the original's run of that seed:
the table counts the seeds where every episode's reward, length and kind are the original's.

Each run is one fresh process; ``--jobs`` runs that many at once (each agent run uses one core
with the defaults: the original's one env, fastretro's one worker). Prints one JSON line per run
(``"bench": "jerk-parity"``) and a markdown table per budget: mean episode reward over the
seeds with its standard error, the paired difference to the original's, episodes per run,
steps/s and the ratio to the original's.

Run: ``python bench/bench_jerk_parity.py [--timesteps 30000 100000] [--seeds 0 ... 9]
[--jobs 2] [--num-envs 1] [--replay-from reset auto] [--out FILE]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.tools.peers import cores

#: The original's constants.
EXPLOIT_BIAS = 0.25
TOTAL_TIMESTEPS = int(1e6)
#: The Genesis button order of stable-retro's filtered actions: B is 0, LEFT 6, RIGHT 7.
BUTTONS = 12


class BudgetSpent(Exception):
    """Raised by the tracked env on the step past the budget (the server stopping the agent)."""


class TrackedEnv:
    """retro-baselines' TrackedEnv: the trajectory so far and every step ever taken."""

    def __init__(self, env, budget: int) -> None:
        self.env, self.budget = env, budget
        self.action_history: list[np.ndarray] = []
        self.reward_history: list[float] = []
        self.total_reward = 0.0
        self.total_steps_ever = 0
        self.episodes: list[tuple[float, int]] = []  # (reward, length) of each ended episode
        self.kind = "explore"
        self.kinds: list[str] = []

    def best_sequence(self) -> list[np.ndarray]:
        """The prefix of the trajectory up to the first step with the best cumulative reward."""
        max_cumulative = max(self.reward_history)
        for i, rew in enumerate(self.reward_history):
            if rew == max_cumulative:
                return self.action_history[: i + 1]
        raise RuntimeError("unreachable")

    def reset(self):
        """Forget the trajectory and reset the env."""
        self.action_history, self.reward_history = [], []
        self.total_reward = 0.0
        return self.env.reset()

    def step(self, action):
        """One step, tracked; raises BudgetSpent once the budget is used up."""
        if self.total_steps_ever >= self.budget:
            raise BudgetSpent
        self.total_steps_ever += 1
        self.action_history.append(action.copy())
        obs, rew, terminated, truncated, info = self.env.step(action)
        done = terminated or truncated
        self.total_reward += rew
        self.reward_history.append(self.total_reward)
        if done:
            self.episodes.append((float(self.total_reward), len(self.reward_history)))
            self.kinds.append(self.kind)
        return obs, rew, done, info


def move(env, num_steps, left=False, jump_prob=1.0 / 10.0, jump_repeat=4):
    """Move right (or left) for up to ``num_steps`` steps, jumping at random."""
    total_rew, done, steps_taken, jumping_steps_left = 0.0, False, 0, 0
    while not done and steps_taken < num_steps:
        action = np.zeros((BUTTONS,), dtype=bool)
        action[6] = left
        action[7] = not left
        if jumping_steps_left > 0:
            action[0] = True
            jumping_steps_left -= 1
        elif random.random() < jump_prob:
            jumping_steps_left = jump_repeat - 1
            action[0] = True
        _, rew, done, _ = env.step(action)
        total_rew += rew
        steps_taken += 1
    return total_rew, done


def exploit(env, sequence):
    """Replay ``sequence`` from reset, then no-op until the episode ends; its total reward."""
    env.reset()
    done, idx = False, 0
    while not done:
        if idx >= len(sequence):
            _, _, done, _ = env.step(np.zeros((BUTTONS,), dtype=bool))
        else:
            _, _, done, _ = env.step(sequence[idx])
        idx += 1
    return env.total_reward


def original_jerk(
    game: str,
    timesteps: int,
    seed: int,
    max_episode_steps: int = 4500,
    exploit_bias: float = EXPLOIT_BIAS,
) -> dict:
    """The original's main() on one plain stable-retro env, until ``timesteps`` steps.

    ``max_episode_steps`` and ``exploit_bias``: the contest's and the original's, unless a
    short test needs short episodes and frequent replays.
    """
    import gymnasium
    import stable_retro

    from fastretro.tools.peers import StochasticFrameSkip

    random.seed(seed)
    env = stable_retro.make(game, render_mode=None)
    env = StochasticFrameSkip(env, 4, 0.25, seed=seed)
    env = gymnasium.wrappers.TimeLimit(env, max_episode_steps=max_episode_steps)
    env = TrackedEnv(env, timesteps)
    new_ep, solutions = True, []
    start = time.perf_counter()
    try:
        while True:
            if new_ep:
                if solutions and random.random() < (
                    exploit_bias + env.total_steps_ever / TOTAL_TIMESTEPS
                ):
                    solutions = sorted(solutions, key=lambda x: np.mean(x[0]))
                    best_pair = solutions[-1]
                    env.kind = "replay"
                    new_rew = exploit(env, best_pair[1])
                    best_pair[0].append(new_rew)
                    continue
                env.kind = "explore"
                env.reset()
                new_ep = False
            rew, new_ep = move(env, 100)
            if not new_ep and rew <= 0:
                _, new_ep = move(env, 70, left=True)
            if new_ep:
                solutions.append(([max(env.reward_history)], env.best_sequence()))
    except BudgetSpent:
        pass
    wall = time.perf_counter() - start
    env.env.close()
    return _row("original", seed, timesteps, env.total_steps_ever, wall, env.episodes, env.kinds)


def fastretro_jerk(
    game: str,
    timesteps: int,
    seed: int,
    num_envs: int,
    replay_from: str | None,
    deterministic: bool,
) -> dict:
    """``fastretro jerk`` with the same budget (its exploit schedule: the original's 1e6).

    ``replay_from``: None for its default.
    """
    from fastretro.agents.jerk import JerkConfig, run

    config = JerkConfig(seed=seed, deterministic=deterministic)
    if replay_from is not None:
        config.replay_from = replay_from
    result = run(game, num_envs=num_envs, config=config, progress=False, timesteps=timesteps)
    episodes = list(zip(result["episode_rewards"], result["episode_lengths"]))
    mode = "" if deterministic else ", async"
    agent = f"fastretro x{num_envs}, replay from {result['replay_path']}{mode}"
    return _row(
        agent, seed, timesteps, result["timesteps"], result["wall_s"], episodes,
        result["episode_kinds"],
    )  # fmt: skip


def _row(agent, seed, budget, steps, wall, episodes, kinds) -> dict:
    rewards = [r for r, _ in episodes]
    return {
        "bench": "jerk-parity",
        "agent": agent,
        "seed": seed,
        "budget": budget,
        "timesteps": steps,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 1),
        "episodes": len(episodes),
        "mean_episode_reward": float(np.mean(rewards)) if rewards else 0.0,
        "mean_episode_steps": float(np.mean([n for _, n in episodes])) if episodes else 0.0,
        "exploit_episodes": sum(kind != "explore" for kind in kinds),
        "episode_rewards": rewards,
        "episode_steps": [n for _, n in episodes],
        # e: explored from reset, p: replayed from reset, s: went on from a saved state.
        "episode_kinds": "".join({"explore": "e", "replay": "p", "restore": "s"}[k] for k in kinds),
    }


def _call(job):
    fn, args = job
    return fn(*args)


def _same_run(row: dict, base: dict) -> bool:
    """Every episode of ``row`` has the reward, length and kind of ``base``'s."""
    keys = ("episode_rewards", "episode_steps", "episode_kinds")
    return all(row[key] == base[key] for key in keys)


def table(rows: list[dict], game: str) -> str:
    """One markdown table per budget: reward (mean +- standard error), episodes, steps/s.

    The difference to the original's is paired by seed (its s.e.: of the per-seed differences).
    """
    out = []
    for budget in sorted({r["budget"] for r in rows}):
        mine = [r for r in rows if r["budget"] == budget]
        seeds = sorted({r["seed"] for r in mine})
        base = {r["seed"]: r for r in mine if r["agent"] == "original"}
        base_sps = np.mean([r["steps_per_s"] for r in base.values()]) if base else np.nan
        out.append(
            f"\n{game}, {budget:,} steps a run, seeds {seeds[0]}-{seeds[-1]} ({len(seeds)}), "
            f"{cores()} cores"
        )
        out.append(
            "| agent | mean episode reward (+- s.e.) | minus original's (+- s.e.) "
            "| seeds >= original | seeds identical to original | episodes a run "
            "| exploit episodes | steps/s | x original |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for agent in dict.fromkeys(r["agent"] for r in mine):
            rs = [r for r in mine if r["agent"] == agent]
            rew = np.array([r["mean_episode_reward"] for r in rs])
            se = rew.std(ddof=1) / np.sqrt(len(rew)) if len(rew) > 1 else 0.0
            sps = np.mean([r["steps_per_s"] for r in rs])
            paired = [r for r in rs if r["seed"] in base]
            diff = np.array(
                [r["mean_episode_reward"] - base[r["seed"]]["mean_episode_reward"] for r in paired]
            )
            diff_se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
            ahead = int((diff >= 0).sum())
            same = sum(_same_run(r, base[r["seed"]]) for r in paired)
            vs = (
                ("-", "-", "-")
                if agent == "original"
                else (
                    f"{diff.mean():+,.1f} +- {diff_se:,.1f}",
                    f"{ahead}/{len(paired)}",
                    f"{same}/{len(paired)}",
                )
            )
            out.append(
                f"| {agent} | {rew.mean():,.1f} +- {se:,.1f} | {' | '.join(vs)} | "
                f"{np.mean([r['episodes'] for r in rs]):.1f} | "
                f"{np.mean([r['exploit_episodes'] for r in rs]):.1f} | {sps:,.0f} | "
                f"{sps / base_sps:.2f}x |"
            )
    return "\n".join(out)


def main() -> None:
    """Run every (budget, seed, agent) in a fresh process; print lines and the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[30_000, 100_000])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each in its process")
    parser.add_argument("--agents", nargs="+", default=["original", "fastretro"])
    parser.add_argument("--num-envs", type=int, default=1, help="fastretro's explorers")
    parser.add_argument(
        "--replay-from",
        nargs="+",
        choices=("auto", "state", "reset"),
        default=[None],
        help="fastretro's exploit episodes, one agent per value (default: its default)",
    )
    parser.add_argument(
        "--nondeterministic",
        action="store_true",
        help="fastretro's async driver (explorers take turns as they finish) instead of the "
        "default deterministic one",
    )
    parser.add_argument("--out", default=None, help="also write everything printed here")
    args = parser.parse_args()
    jobs = []
    # Interleaved, so that both agents see the same load on a shared machine; seed by seed,
    # largest budget first, so that the last runs to finish are short ones.
    for seed in args.seeds:
        for budget in sorted(args.timesteps, reverse=True):
            if "original" in args.agents:
                jobs.append((original_jerk, (args.game, budget, seed)))
            if "fastretro" in args.agents:
                for replay_from in args.replay_from:
                    jobs.append(
                        (
                            fastretro_jerk,
                            (
                                args.game,
                                budget,
                                seed,
                                args.num_envs,
                                replay_from,
                                not args.nondeterministic,
                            ),
                        )
                    )
    out = open(args.out, "w") if args.out else None  # noqa: SIM115

    def emit(text: str) -> None:
        print(text, flush=True)
        if out is not None:
            out.write(text + "\n")
            out.flush()

    emit(f"# {' '.join(sys.argv)}")
    rows = []
    # One run per process (max_tasks_per_child=1): no run inherits another's warm caches.
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(args.jobs, mp_context=ctx, max_tasks_per_child=1) as ex:
        for row in ex.map(_call, jobs):
            rows.append(row)
            emit(json.dumps(row))
    emit(table(rows, args.game))
    if out is not None:
        out.close()


if __name__ == "__main__":
    main()
