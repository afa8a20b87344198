"""Local evaluation under the Retro Contest's rules, without Docker: ``fastretro eval``.

The contest ran an agent for a budget of timesteps per level and scored it by the mean episode
reward over every episode in that budget. This module does the same on the pool, one env per
level (several levels evaluate in parallel), and writes the contest's results folder:

    RESULTS/score.json                 the score per level and overall
    RESULTS/eval.log                   what happened, with times
    RESULTS/<GAME>-<STATE>/monitor.csv  one row per episode (SB3/baselines Monitor format)
    RESULTS/<GAME>-<STATE>/log.csv      steps and seconds, every 1,000 steps
    RESULTS/<GAME>-<STATE>/bk2/         one movie per episode, GAME-STATE-NNNNNN.bk2

Timesteps counted: agent steps only (4 frames each); resets are not counted (the contest's
server counted them too, so its budget ran out a few steps sooner). An episode still running
when the budget or the wall-clock limit runs out ends there: it is a row of monitor.csv (as the
contest's cut-short last episode was) and its movie is closed.

The agent interface is small: ``factory(observation_space, action_space)`` returns an object
with ``act(observations) -> actions`` (batched over the levels); an optional
``observe(rewards, terminated, truncated)`` sees each step's outcome. A factory may carry an
``env_options`` dict (pool options such as ``actions="sonic7"``, ``grayscale=True``,
``resize=(84, 84)``, ``frame_stack=4``, ``observe=False``); the contest's rules themselves
(scenario, frame timing, episode length) are not the agent's to change.
"""

from __future__ import annotations

import argparse
import csv
import glob
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fastretro import contest
from fastretro.errors import FastRetroError, InvalidArgumentError

log = logging.getLogger(__name__)

LOG_EVERY = 1000
#: Pool options an agent may not set: they are the contest's rules.
RULES = ("scenario", "frameskip", "sticky_prob", "max_episode_steps", "record", "autoreset_mode")


class RandomAgent:
    """Uniformly random actions: the baseline every agent should beat."""

    def __init__(self, observation_space, action_space) -> None:
        self.action_space = action_space
        self.action_space.seed(0)

    def act(self, observations: np.ndarray) -> np.ndarray:
        """One random action per env."""
        return self.action_space.sample()


AGENTS: dict[str, Callable] = {"random": RandomAgent}


@dataclass
class _Level:
    """One level's running account: its env index, episodes and files."""

    game: str
    state: str | None
    folder: str
    monitor: object = None
    monitor_writer: object = None
    log_file: object = None
    log_writer: object = None
    steps: int = 0
    episode_reward: float = 0.0
    episode_length: int = 0
    rewards: list | None = None

    @property
    def name(self) -> str:
        return f"{self.game}-{self.state or 'default'}"


def load_agent(spec: str) -> Callable:
    """The agent factory named by ``spec``.

    A built-in name, ``AGENT:PATH`` of a trained agent (``ppo2:runs/air/checkpoints/last.pt``),
    or ``module:factory``. A trained agent's checkpoint is read without running code
    (:mod:`fastretro.agents.checkpoints`), so a file from a stranger is safe to evaluate; a
    ``module:factory`` is code, and runs.

    Raises:
        InvalidArgumentError: the module or attribute cannot be imported, or the checkpoint
            cannot be loaded (missing, another agent's, of the old pickle format: the message
            names ``fastretro convert-checkpoint``).
    """
    from fastretro.agents import registry

    if spec in AGENTS:
        return AGENTS[spec]
    name, _, path = spec.partition(":")
    # The registry's agents: JERK by its name, a trained agent as NAME:PATH.
    agent = registry.AGENTS.get(name)
    if agent is not None and not agent.eval_takes_path and not path:
        return agent.eval_factory()
    if agent is not None and agent.eval_takes_path:
        if not path:
            raise InvalidArgumentError(
                f"Expected --agent {name}:PATH (its checkpoint), got {spec!r}"
            )
        return agent.eval_factory()(path)
    named = [f"{a.name}:PATH" if a.eval_takes_path else a.name for a in registry.AGENTS.values()]
    return import_callable(spec, sorted([*AGENTS, *named]), "factory")


def import_callable(spec: str, choices: Sequence[str], kind: str) -> Callable:
    """The callable named by a ``module:attr`` spec (``--agent``'s other form).

    Raises:
        InvalidArgumentError: not ``module:attr``, or the module or attribute cannot be
            imported; the message lists ``choices``, the built-in names.
    """
    if ":" not in spec:
        raise InvalidArgumentError(
            f"Expected --agent to be one of {list(choices)} or module:{kind}, got {spec!r}"
        )
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's to fix
        raise InvalidArgumentError(
            f"Cannot import the agent module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    func = getattr(module, attr, None)
    if not callable(func):
        raise InvalidArgumentError(f"{module_name!r} has no callable {attr!r}")
    return func


def evaluate(
    factory: Callable,
    levels: Sequence[tuple[str, str | None]],
    results: str,
    timesteps: int = 1_000_000,
    wall_limit_s: float = 12 * 3600.0,
    max_episode_steps: int = contest.MAX_EPISODE_STEPS,
    progress: bool = True,
) -> dict:
    """Run the agent under the contest's rules on every level; write the results folder.

    Args:
        factory: ``factory(observation_space, action_space)`` -> agent (see module docstring).
        levels: (game, state) pairs, one env each.
        results: the results folder (created).
        timesteps: agent steps per level.
        wall_limit_s: seconds before the run stops, budget or not.
        max_episode_steps: the episode limit (the contest's 4,500; smaller for quick tests).
        progress: show a progress bar.

    Returns:
        The content of ``score.json``.
    """
    from fastretro.config import EnvConfig
    from fastretro.runtime.pool import VecRetroEnv

    options = _check_run(factory, results, timesteps, wall_limit_s)
    accounts = _accounts(levels, results)
    handler = logging.FileHandler(os.path.join(results, "eval.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger("fastretro").addHandler(handler)
    logging.getLogger("fastretro").setLevel(logging.INFO)
    try:
        config = EnvConfig.contest(
            [lv.game for lv in accounts],
            [lv.state for lv in accounts],
            max_episode_steps=max_episode_steps,
            record=[os.path.join(lv.folder, "bk2") for lv in accounts],
            **options,
        )
        # An ended episode restarts within the step: no agent step is spent on a reset.
        env = VecRetroEnv(config, len(accounts), autoreset_mode="same_step")
    except Exception:
        logging.getLogger("fastretro").removeHandler(handler)
        raise
    # The clock runs from here: the budget is the agent's, not the workers' start-up.
    start = time.time()
    try:
        stopped_by = _run(env, factory, accounts, timesteps, wall_limit_s, start, progress)
    finally:
        _close(env, accounts, start, handler)
    return _score(accounts, results, timesteps, stopped_by, start)


def _check_run(factory: Callable, results: str, timesteps: int, wall_limit_s: float) -> dict:
    """The agent's pool options, once the run's arguments and results folder are checked."""
    if timesteps < 1:
        raise InvalidArgumentError(f"Expected timesteps >= 1, got {timesteps}")
    if not wall_limit_s > 0:
        raise InvalidArgumentError(f"Expected a wall-clock limit > 0 s, got {wall_limit_s}")
    options = dict(getattr(factory, "env_options", {}) or {})
    ruled = sorted(set(options) & set(RULES))
    if ruled:
        raise InvalidArgumentError(
            f"The agent's env_options may not set the contest's rules: {ruled}"
        )
    try:
        os.makedirs(results, exist_ok=True)
        probe = os.path.join(results, ".writable")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise InvalidArgumentError(
            f"The results folder {results!r} is not writable: {exc}"
        ) from None
    return options


def _accounts(levels: Sequence[tuple[str, str | None]], results: str) -> list[_Level]:
    """One :class:`_Level` per level, each with its folder made."""
    if len(set(levels)) != len(levels) or not levels:
        raise InvalidArgumentError(f"Expected distinct (game, state) levels, got {list(levels)}")
    accounts = [_Level(g, s, "") for g, s in levels]
    for lv in accounts:
        lv.folder = os.path.join(results, lv.name)
        os.makedirs(os.path.join(lv.folder, "bk2"), exist_ok=True)
        lv.rewards = []
    return accounts


def _run(env, factory, accounts, timesteps, wall_limit_s, start, progress) -> str:
    """The agent's steps until the budget or the clock runs out; which one did."""
    from tqdm import tqdm

    stopped_by = "budget"
    for lv in accounts:
        _open_files(lv, start)
    log.info("evaluating on %s for %d timesteps per level", [a.name for a in accounts], timesteps)
    try:
        agent = factory(env.single_observation_space, env.action_space)
    except Exception as exc:  # noqa: BLE001 - the agent's own failure, reported in one line
        raise InvalidArgumentError(f"The agent factory raised {type(exc).__name__}: {exc}") from exc
    observe = getattr(agent, "observe", None)
    obs, _ = env.reset(seed=0)
    bar = tqdm(total=timesteps, unit="step", desc="eval", disable=not progress)
    for t in range(timesteps):
        if time.time() - start > wall_limit_s:
            stopped_by = "wall-limit"
            log.info("wall-clock limit of %g s reached after %d timesteps", wall_limit_s, t)
            break
        actions = agent.act(obs)
        obs, rewards, terminated, truncated, _ = env.step(actions)
        if observe is not None:
            observe(rewards, terminated, truncated)
        now = time.time() - start
        for i, lv in enumerate(accounts):
            lv.steps += 1
            lv.episode_reward += float(rewards[i])
            lv.episode_length += 1
            if terminated[i] or truncated[i]:
                _end_episode(lv, now)
            if lv.steps % LOG_EVERY == 0:
                lv.log_writer.writerow([lv.steps, round(now, 6)])
                lv.log_file.flush()
        bar.update(1)
        if t % 100 == 0:
            best = max((max(lv.rewards) for lv in accounts if lv.rewards), default=0.0)
            bar.set_postfix(best=f"{best:g}")
    bar.close()
    return stopped_by


def _close(env, accounts: list[_Level], start: float, handler: logging.Handler) -> None:
    """End the episodes still running, close the pool, the files and the log."""
    # The episode the budget or the clock cut short is a row too; then the movies close.
    now = time.time() - start
    unstarted = []
    for lv in accounts:
        if lv.episode_length > 0 and lv.monitor is not None:
            _end_episode(lv, now)
        elif lv.rewards is not None:
            unstarted.append(lv)
    env.close()
    for lv in unstarted:
        # The run ended just as an episode did: the pool had already opened the next
        # episode's movie, which holds no step. One movie per episode: drop it.
        for empty in glob.glob(os.path.join(lv.folder, "bk2", f"*-{len(lv.rewards):06d}.bk2")):
            os.remove(empty)
    for lv in accounts:
        for f in (lv.monitor, lv.log_file):
            if f is not None:
                f.close()
    logging.getLogger("fastretro").removeHandler(handler)
    handler.close()


def _score(accounts: list[_Level], results: str, timesteps: int, stopped_by: str, start) -> dict:
    """``score.json``'s content, written."""
    per_level = {
        lv.name: {
            "score": float(np.mean(lv.rewards)) if lv.rewards else 0.0,
            "episodes": len(lv.rewards),
            "timesteps": lv.steps,
        }
        for lv in accounts
    }
    score = {
        "score": float(np.mean([v["score"] for v in per_level.values()])),
        "levels": per_level,
        "timesteps_per_level": timesteps,
        "timesteps_counted": "agent steps (4 frames each); resets are not counted",
        "stopped_by": stopped_by,
        "wall_s": round(time.time() - start, 3),
    }
    with open(os.path.join(results, "score.json"), "w") as f:
        json.dump(score, f, indent=1)
    return score


def _open_files(lv: _Level, start: float) -> None:
    lv.monitor = open(os.path.join(lv.folder, "monitor.csv"), "w", newline="")
    header = {"t_start": start, "env_id": lv.name}
    lv.monitor.write(f"#{json.dumps(header)}\n")
    lv.monitor_writer = csv.writer(lv.monitor)
    lv.monitor_writer.writerow(["r", "l", "t"])
    lv.monitor.flush()
    lv.log_file = open(os.path.join(lv.folder, "log.csv"), "w", newline="")
    lv.log_writer = csv.writer(lv.log_file)
    lv.log_writer.writerow(["l", "t"])
    lv.log_file.flush()


def _end_episode(lv: _Level, now: float) -> None:
    # Flushed per row: an interrupted run leaves a valid monitor.csv.
    lv.monitor_writer.writerow([lv.episode_reward, lv.episode_length, round(now, 6)])
    lv.monitor.flush()
    lv.rewards.append(lv.episode_reward)
    log.info(
        "%s episode %d: reward %g, %d steps",
        lv.name,
        len(lv.rewards) - 1,
        lv.episode_reward,
        lv.episode_length,
    )
    lv.episode_reward, lv.episode_length = 0.0, 0


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise InvalidArgumentError(
            f"Expected a duration such as 12h, 30m or 90s, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """``fastretro eval --agent A --game G [--state S] ...``."""
    parser = argparse.ArgumentParser(prog="fastretro eval", description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="random", help="'random', 'jerk' or module:factory")
    parser.add_argument("--game", action="append", help="game ID (repeat for several levels)")
    parser.add_argument("--state", action="append", help="state per --game (default: the game's)")
    parser.add_argument(
        "--levels", choices=["train", "validation"], help="the contest's level list instead"
    )
    parser.add_argument("--timesteps", type=int, default=1_000_000, help="agent steps per level")
    parser.add_argument("--wall-limit", default="12h", help="e.g. 12h, 30m, 90s")
    parser.add_argument("--results", default="results", help="results folder")
    parser.add_argument("--max-episode-steps", type=int, default=contest.MAX_EPISODE_STEPS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.levels:
            chosen = (
                contest.training_levels() if args.levels == "train" else contest.validation_levels()
            )
            levels = [(lv.game, lv.state) for lv in chosen]
        elif args.game:
            states = args.state or [None] * len(args.game)
            if len(states) != len(args.game):
                raise InvalidArgumentError("Give one --state per --game, or none")
            levels = list(zip(args.game, states))
        else:
            from fastretro import DEFAULT_GAME

            levels = [(DEFAULT_GAME, None)]
        factory = load_agent(args.agent)
        score = evaluate(
            factory,
            levels,
            args.results,
            args.timesteps,
            _duration(args.wall_limit),
            args.max_episode_steps,
            progress=not args.no_progress,
        )
    except FastRetroError as exc:
        print(f"fastretro eval: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(score))
    return 0
