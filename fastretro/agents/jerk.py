"""JERK ("Just Enough Retained Knowledge"), the Retro Contest's scripted baseline, on the pool.

A port of openai/retro-baselines agents/jerk_agent.py. An explorer runs right for 100 steps,
jumping at random (probability 0.1, the jump held 4 steps); if that earned nothing it backs off
left for 70 steps; and so on until the episode ends. It remembers the action prefix that
reached the episode's best cumulative reward. At the start of each episode, with probability
``EXPLOIT_BIAS + steps so far / budget``, it replays the best remembered sequence (by mean
score) instead, padded with no-op until the episode ends, and adds that replay's total reward
to the sequence's scores.

Vectorized: every env of a VecRetroEnv runs one explorer; explorers on the same level share
one pool of remembered solutions. The pool steps all envs together with no frames at all
(``observe=False``: JERK never looks at pixels); the per-step bookkeeping of every env runs in
numba kernels (fastretro/kernels/jerk.py) over preallocated arrays, and Python only runs when
an episode ends.

Replay path: always from reset, as the original. Replaying from a saved emulator state is not
implemented: it is only sound when the scenario keeps no state outside the emulator, and the
contest's Lua reward script does (stable-retro's save states do not carry it).

Run: ``fastretro jerk --game G [--state S] [--num-envs N] [--timesteps T] [--seed K] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from fastretro import contest
from fastretro.errors import FastRetroError, InvalidArgumentError
from fastretro.kernels import jerk as k

#: What "forward", "back" and "jump" press, per game (other games: pass a profile).
PROFILES = {
    "SonicTheHedgehog-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    "SonicTheHedgehog2-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    "SonicAndKnuckles3-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    # Airstriker scrolls by itself: "forward" moves the ship right, "jump" fires.
    "Airstriker-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
}


@dataclass
class JerkConfig:
    """JERK's settings; the defaults are the original's constants."""

    TOTAL_TIMESTEPS: int = 1_000_000
    """The exploit schedule's horizon, and the default budget (the original's 1e6 per level)."""
    EXPLOIT_BIAS: float = 0.25
    """Base probability of replaying the best sequence at an episode start."""
    forward_steps: int = 100
    """Steps of one move forward (the original's move(env, 100))."""
    back_steps: int = 70
    """Steps of a back-off after a forward move that earned nothing (move(env, 70, left))."""
    jump_prob: float = 0.1
    """Probability of starting a jump on a step where the jump button is not held."""
    jump_repeat: int = 4
    """Steps a jump holds the button."""
    profile: dict = field(default_factory=dict)
    """Button combos of "forward", "back" and "jump"; default: PROFILES[game]."""
    seed: int = 0
    """Seeds the explorers' draws and the pool's sticky frames."""

    def check(self) -> None:
        """Raise InvalidArgumentError on a value the algorithm cannot use."""
        for name in ("TOTAL_TIMESTEPS", "forward_steps", "back_steps", "jump_repeat"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
        for name in ("EXPLOIT_BIAS", "jump_prob"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise InvalidArgumentError(f"Expected {name} in [0, 1], got {value!r}")


def jerk_actions(profile: dict) -> list[list[str]]:
    """The pool's action set, in the kernels' order: no-op, fwd, fwd+jump, back, back+jump."""
    try:
        fwd, back, jump = profile["forward"], profile["back"], profile["jump"]
    except KeyError as exc:
        raise InvalidArgumentError(
            f"Expected a JERK profile with 'forward', 'back' and 'jump', got {profile!r}"
        ) from exc
    return [[], list(fwd), list(fwd) + list(jump), list(back), list(back) + list(jump)]


class Solutions:
    """The remembered sequences of one level: actions and every score they got."""

    def __init__(self) -> None:
        self.sequences: list[np.ndarray] = []
        self.score_sums: list[float] = []
        self.score_counts: list[int] = []

    def add(self, actions: np.ndarray, score: float) -> None:
        """Remember a new sequence with its first score."""
        self.sequences.append(actions.copy())
        self.score_sums.append(score)
        self.score_counts.append(1)

    def best(self) -> int:
        """Index of the sequence with the highest mean score."""
        order = np.empty(len(self.sequences), np.int64)
        k.rank_by_mean_into(
            np.asarray(self.score_sums, float), np.asarray(self.score_counts, float), order
        )
        return int(order[0])

    def score(self, index: int, value: float) -> None:
        """Add a replay's score to sequence ``index``."""
        self.score_sums[index] += value
        self.score_counts[index] += 1


def run(
    game: str,
    state: str | None = None,
    num_envs: int = 2,
    config: JerkConfig | None = None,
    progress: bool = True,
    pool_options: dict | None = None,
    timesteps: int | None = None,
    movie_dir: str | None = None,
) -> dict:
    """Run JERK on one level with ``num_envs`` explorers; return the run's figures.

    ``timesteps`` is the budget (agent steps over the whole pool); default
    ``config.TOTAL_TIMESTEPS``. The exploit probability grows with steps / TOTAL_TIMESTEPS
    either way, as in the original. With ``movie_dir``, the best remembered sequence is played
    once more at the end and recorded there as a .bk2 (with the frames' real buttons, so
    ``fastretro replay`` gives back the reward reported as ``best_movie_reward``).
    """
    from tqdm import tqdm

    from fastretro import VecRetroEnv

    config = config or JerkConfig()
    config.check()
    budget = config.TOTAL_TIMESTEPS if timesteps is None else timesteps
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidArgumentError(f"Expected timesteps to be an int >= 1, got {budget!r}")
    profile = config.profile or PROFILES.get(game)
    if profile is None:
        raise InvalidArgumentError(
            f"No JERK profile for {game}: pass JerkConfig(profile={{'forward': [...], "
            f"'back': [...], 'jump': [...]}}) with this console's button names"
        )
    options = {
        "frameskip": contest.FRAMESKIP,
        "sticky_prob": contest.STICKY_PROB,
        "max_episode_steps": contest.MAX_EPISODE_STEPS,
        **(pool_options or {}),
    }
    horizon = options["max_episode_steps"]
    rng = np.random.default_rng(config.seed)
    n = num_envs
    mode = np.full(n, k.MODE_FORWARD, np.int64)
    steps_left = np.full(n, config.forward_steps, np.int64)
    jump_left = np.zeros(n, np.int64)
    move_reward = np.zeros(n)
    history = np.zeros((n, horizon), np.int64)
    t = np.zeros(n, np.int64)
    cumulative = np.zeros(n)
    best = np.full(n, -np.inf)
    best_t = np.zeros(n, np.int64)
    replay = np.zeros((n, horizon), np.int64)
    replay_len = np.zeros(n, np.int64)
    replay_pos = np.zeros(n, np.int64)
    replaying = np.full(n, -1, np.int64)  # which solution an env replays, -1 when exploring
    actions = np.zeros(n, np.int64)
    solutions = Solutions()
    episode_rewards: list[float] = []
    replays = 0

    def begin_episode(i: int, steps_so_far: int) -> None:
        nonlocal replays
        t[i], cumulative[i], best[i], best_t[i] = 0, 0.0, -np.inf, 0
        jump_left[i], move_reward[i] = 0, 0.0
        p = config.EXPLOIT_BIAS + steps_so_far / config.TOTAL_TIMESTEPS
        if solutions.sequences and rng.random() < p:
            j = solutions.best()
            seq = solutions.sequences[j]
            replay[i, : len(seq)] = seq
            replay_len[i], replay_pos[i], replaying[i] = len(seq), 0, j
            mode[i] = k.MODE_REPLAY
            replays += 1
        else:
            mode[i], steps_left[i], replaying[i] = k.MODE_FORWARD, config.forward_steps, -1

    start = time.perf_counter()
    steps = 0
    with VecRetroEnv(
        game,
        n,
        state,
        actions=jerk_actions(profile),
        observe=False,
        autoreset_mode="same_step",
        **options,
    ) as env:
        env.reset(seed=config.seed)
        for i in range(n):
            begin_episode(i, 0)
        bar = tqdm(total=budget, unit="step", desc="jerk", disable=not progress)
        while steps < budget:
            k.jerk_actions_into(
                mode,
                jump_left,
                replay,
                replay_len,
                replay_pos,
                rng.random(n),
                config.jump_prob,
                config.jump_repeat,
                actions,
            )
            _, rewards, terminated, truncated, _ = env.step(actions)
            done = terminated | truncated
            k.jerk_record_step(
                actions,
                rewards,
                done,
                t,
                history,
                cumulative,
                best,
                best_t,
                mode,
                steps_left,
                move_reward,
                jump_left,
                config.forward_steps,
                config.back_steps,
            )
            steps += n
            for i in np.flatnonzero(done):  # rare: Python only at episode ends
                episode_rewards.append(float(cumulative[i]))
                if replaying[i] >= 0:
                    solutions.score(int(replaying[i]), float(cumulative[i]))
                else:
                    solutions.add(history[i, : best_t[i]], float(best[i]))
                begin_episode(i, steps)
            bar.update(n)
            if episode_rewards and steps % (50 * n) == 0:
                bar.set_postfix(best=f"{max(episode_rewards):g}")
        bar.close()
    wall = time.perf_counter() - start
    movie = None
    if movie_dir is not None and solutions.sequences:
        movie = _record_best(
            game,
            state,
            profile,
            solutions.sequences[solutions.best()],
            options,
            movie_dir,
            config.seed,
        )
    return {
        "game": game,
        "state": state,
        "num_envs": n,
        "timesteps": steps,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 1),
        "episodes": len(episode_rewards),
        "mean_episode_reward": float(np.mean(episode_rewards)) if episode_rewards else None,
        "best_episode_reward": max(episode_rewards) if episode_rewards else None,
        "solutions": len(solutions.sequences),
        "replays": replays,
        "replay_path": "reset",
        "best_movie": None if movie is None else movie[0],
        "best_movie_reward": None if movie is None else movie[1],
        "config": {key: v for key, v in asdict(config).items() if key != "profile"},
    }


def _record_best(game, state, profile, sequence, options, movie_dir, seed):
    """Play ``sequence`` (then no-op) for one episode in a recording pool: (movie, reward)."""
    import glob
    import os

    from fastretro import VecRetroEnv

    total = 0.0
    with VecRetroEnv(
        game,
        1,
        state,
        actions=jerk_actions(profile),
        observe=False,
        record=[movie_dir],
        autoreset_mode="next_step",
        **options,
    ) as env:
        env.reset(seed=seed)
        for t in range(options["max_episode_steps"]):
            action = sequence[t] if t < len(sequence) else k.NOOP
            _, reward, terminated, truncated, _ = env.step(np.array([action]))
            total += float(reward[0])
            if terminated[0] or truncated[0]:
                break
    movies = sorted(glob.glob(os.path.join(movie_dir, "*.bk2")), key=os.path.getmtime)
    return movies[-1], total


def main(argv: list[str] | None = None) -> int:
    """``fastretro jerk --game G [--state S] [--num-envs N] [--timesteps T] [--seed K]``."""
    from fastretro import DEFAULT_GAME

    parser = argparse.ArgumentParser(prog="fastretro jerk", description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--state", default=None)
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--timesteps", type=int, default=JerkConfig.TOTAL_TIMESTEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="only the JSON line at the end")
    parser.add_argument("--movie-dir", default=None, help="record the best sequence here (.bk2)")
    args = parser.parse_args(argv)
    config = JerkConfig(seed=args.seed)
    try:
        result = run(
            args.game,
            args.state,
            args.num_envs,
            config,
            progress=not args.json,
            timesteps=args.timesteps,
            movie_dir=args.movie_dir,
        )
    except FastRetroError as exc:
        print(f"fastretro jerk: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
