"""JERK ("Just Enough Retained Knowledge"), the Retro Contest's scripted baseline, on the pool.

A port of openai/retro-baselines agents/jerk_agent.py. An explorer runs right for 100 steps,
jumping at random (probability 0.1, the jump held 4 steps); if that earned nothing it backs off
left for 70 steps; and so on until the episode ends. It remembers the action prefix that
reached the episode's best cumulative reward. At the start of each episode, with probability
``EXPLOIT_BIAS + steps so far / TOTAL_TIMESTEPS`` (every step counts, replays' included; 1e6
whatever the budget), it replays the best remembered sequence (by mean score) instead, padded
with no-op until the episode ends, and adds that replay's total reward to the sequence's
scores.

Vectorized: every env of a VecRetroEnv runs one explorer; explorers on the same level share
one pool of remembered solutions. The pool produces no frames at all (``observe=False``: JERK
never looks at pixels); the bookkeeping of every env runs in numba kernels
(fastretro/agents/jerk_kernels.py) over preallocated arrays, and Python only runs when an episode
ends. How the pool is driven: see "Open loop" below.

Random draws: explorer i draws from Python's ``random.Random(seed + i)`` exactly where the
original draws from ``random`` (:class:`~fastretro.agents.jerk_agent.DrawStream`), and the
pool's env i draws its sticky frames from ``default_rng(seed + i)``, as the port of the original
in bench/bench_jerk_parity.py does. So one explorer with ``seed`` plays that port's run of
``seed`` step for step: the same episodes, the same score (tests/agents/test_jerk.py).

Replay path (``JerkConfig.replay_from``): by default (``"reset"``) an exploit episode replays
the best sequence from reset, then no-ops, as the original. ``"state"`` (or ``"auto"``: where
sound) instead loads the emulator state saved where that sequence reached its best
(``VecRetroEnv(snapshot_best=True)``) and explores on from there; the episode's return counts
the prefix's reward, as a replay would. That needs a scenario whose reward and done depend only
on emulator memory (the pool's workers evaluate it: ``scenario_engines == "fastretro"``); where
the scenario keeps state outside the emulator (the contest's Lua reward script; stable-retro's
save states do not carry it), ``"auto"`` replays from reset. It is a change to the algorithm,
not shown to score at least what the original scores (bench/agents.md), hence not the default.
The run reports which path ran (``replay_path``).

Open loop (the default): between two decisions JERK's actions are fixed (a move's are drawn at
its start, a replay's are the remembered sequence), so the parent hands each env a whole move
or replay and each worker runs it step after step without a round trip. By default
(``JerkConfig.deterministic``) the pool runs in lock-step rounds (``step_sequences``): every
env runs its stretch, then the agent accounts for all of them in env order, so that a seed
gives the same run bit for bit (each explorer draws from its own stream, and only the draws
of the steps that ran: a run stepped per step is the same run). ``deterministic=False``
(``--async``) lets each env go on as soon as its stretch is over (``send_sequences``; an exploit
episode that goes on from a saved state loads it with ``VecRetroEnv.async_restore`` first): no
env waits for another, but the order in which explorers share solutions depends on timing.

Budget: the contest scores the mean reward of the episodes that end within the budget. With
several explorers the budget is split, each cuts an episode short at the end (long episodes
are the likeliest to be cut, and on Airstriker long episodes score most), and the first episode
of each explores, so the default is one explorer, as the original (bench/bench_jerk_parity.py).

The agent itself (the profiles, :class:`JerkConfig`, :class:`JerkAgent`) is in
:mod:`fastretro.agents.jerk_agent`; this module makes its pool, drives it and is the command.

Run: ``fastretro jerk --game G [--state S] [--num-envs N] [--timesteps T] [--seed K]
[--replay-from auto|state|reset] [--async] [--per-step] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from fastretro.agents import jerk_kernels as k
from fastretro.agents.jerk_agent import (
    ATARI_PROFILE,
    PROFILES,
    JerkAgent,
    JerkConfig,
    Solutions,
    jerk_actions,
    profile_of,
)
from fastretro.config import EnvConfig
from fastretro.errors import FastRetroError, InvalidArgumentError

if TYPE_CHECKING:
    from fastretro.runtime.pool import VecRetroEnv

__all__ = [
    "ATARI_PROFILE",
    "OPEN_LOOP_STEPS",
    "PROFILES",
    "JerkAgent",
    "JerkConfig",
    "Solutions",
    "contest_timing",
    "drive_async_batches",
    "drive_lock_step",
    "drive_open_loop",
    "drive_per_step",
    "jerk_actions",
    "main",
    "make_pool",
    "profile_of",
    "run",
]


#: The longest stretch an env runs open-loop. Budget handed out to one env in flight is not
#: available to the others, so a short cap keeps the last stretches of a run from leaving
#: envs idle while one finishes alone.
OPEN_LOOP_STEPS = 256


def contest_timing(game: str, state: str | None = None) -> dict:
    """The contest's frame timing and episode length, as pool options.

    Without its scenario: a JERK pool keeps the game's own unless its options name one
    (replaying from saved states needs a declarative scenario).
    """
    rules = EnvConfig.contest(game, state, scenario=None)
    return {
        "frameskip": rules.frameskip,
        "sticky_prob": rules.sticky_prob,
        "max_episode_steps": rules.max_episode_steps,
    }


def make_pool(
    game: str,
    state: str | None = None,
    num_envs: int = 1,
    *,
    profile: dict | None = None,
    batch_size: int | None = None,
    sequence_length: int = OPEN_LOOP_STEPS,
    snapshot_best: bool = False,
    **options,
) -> VecRetroEnv:
    """The pool JERK explores with, as :func:`run` and ``fastretro profile`` make it.

    The profile's button combos (:func:`jerk_actions`), no observations (JERK is blind),
    episodes that restart within the step that ends them, and the contest's frame timing and
    episode length (:func:`contest_timing`) unless ``options`` say otherwise.
    ``sequence_length``: steps a worker runs on its own from one :meth:`VecRetroEnv.send_sequences`
    (0: the parent picks every step's actions). ``profile``: default :func:`profile_of`.

    Raises:
        InvalidArgumentError: no profile for ``game``.
    """
    from fastretro.runtime.pool import VecRetroEnv

    profile = profile or profile_of(game)
    if profile is None:
        raise InvalidArgumentError(
            f"No JERK profile for {game}: pass profile={{'forward': [...], 'back': [...], "
            "'jump': [...]}} with this console's button names"
        )
    return VecRetroEnv(
        game,
        num_envs,
        state,
        actions=jerk_actions(profile),
        observe=False,
        autoreset_mode="same_step",
        batch_size=batch_size,
        snapshot_best=snapshot_best,
        sequence_length=sequence_length,
        **{**contest_timing(game, state), **options},
    )


def _check_run(num_envs, budget, open_loop: bool, async_batches: bool) -> None:
    """Raise InvalidArgumentError on :func:`run`'s arguments that do not go together."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise InvalidArgumentError(f"Expected num_envs >= 1, got {num_envs!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidArgumentError(f"Expected timesteps to be an int >= 1, got {budget!r}")
    if open_loop and async_batches:
        raise InvalidArgumentError(
            "Expected open_loop or async_batches, not both: async_batches halves a pool that "
            "the parent steps step by step (pass open_loop=False)"
        )


def run(
    game: str,
    state: str | None = None,
    num_envs: int = 1,
    config: JerkConfig | None = None,
    progress: bool = True,
    pool_options: dict | None = None,
    timesteps: int | None = None,
    movie_dir: str | None = None,
    async_batches: bool = False,
    open_loop: bool = True,
) -> dict:
    """Run JERK on one level with ``num_envs`` explorers; return the run's figures.

    ``timesteps`` is the budget (agent steps over the whole pool); default
    ``config.TOTAL_TIMESTEPS``. The exploit probability grows with steps / TOTAL_TIMESTEPS
    either way, as in the original. With ``movie_dir``, the best remembered sequence is played
    once more at the end and recorded there as a .bk2 (with the frames' real buttons, so
    ``fastretro replay`` gives back the reward reported as ``best_movie_reward``).
    ``open_loop`` (default): JERK decides nothing within a move or a replay, so each env runs
    a whole one in its worker and the parent steps in only between them: in lock-step rounds
    (``config.deterministic``, :func:`drive_lock_step`) or each env on its own
    (:func:`drive_open_loop`). ``False``: the parent picks every step's actions, in a
    lock-step pool, or with ``async_batches`` in two halves with send/recv (which replays from
    reset). The result holds every ended episode's reward, length (steps it ran) and kind
    (``"explore"``, ``"replay"`` from reset or ``"restore"`` from a saved state).
    """
    from tqdm import tqdm

    config = config or JerkConfig()
    config.check()
    budget = config.TOTAL_TIMESTEPS if timesteps is None else timesteps
    _check_run(num_envs, budget, open_loop, async_batches)
    profile = config.profile or profile_of(game)
    if profile is None:
        raise InvalidArgumentError(
            f"No JERK profile for {game}: pass JerkConfig(profile={{'forward': [...], "
            f"'back': [...], 'jump': [...]}}) with this console's button names"
        )
    options = {**contest_timing(game, state), **(pool_options or {})}
    # Explorers are independent, so the pool can run in two halves: while one half waits for
    # its actions the other keeps emulating (no lock-step barrier).
    batch = (num_envs // 2 or None) if async_batches else None
    batch = batch if batch and batch < num_envs else None
    if open_loop:
        batch = None if config.deterministic else 1
    replay_path, why = _replay_path(
        config.replay_from, game, state, num_envs, options, async_batches
    )
    start = time.perf_counter()
    steps = 0
    with make_pool(
        game,
        state,
        num_envs,
        profile=profile,
        batch_size=batch,
        snapshot_best=replay_path == "state",
        sequence_length=OPEN_LOOP_STEPS if open_loop else 0,
        **options,
    ) as env:
        agent = JerkAgent(
            None,
            env.action_space,
            config,
            horizon=options["max_episode_steps"],
            snapshots=env.best_snapshot if replay_path == "state" else None,
        )
        bar = tqdm(total=budget, unit="step", desc="jerk", disable=not progress)
        if open_loop and config.deterministic:
            steps = drive_lock_step(env, agent, budget, config.seed, bar=bar)
        elif open_loop:
            steps = drive_open_loop(env, agent, budget, config.seed, bar=bar)
        elif env.batch_size is None:
            steps = drive_per_step(env, agent, budget, config.seed, bar=bar)
        else:
            steps = drive_async_batches(env, agent, budget, config.seed, bar=bar)
        bar.close()
    episode_rewards, solutions, replays, n = (
        agent.episode_rewards,
        agent.solutions,
        agent.replays,
        num_envs,
    )
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
        "episode_rewards": episode_rewards,
        "episode_lengths": agent.episode_lengths,
        "episode_kinds": agent.episode_kinds,
        "mean_episode_reward": float(np.mean(episode_rewards)) if episode_rewards else None,
        "best_episode_reward": max(episode_rewards) if episode_rewards else None,
        "solutions": len(solutions.sequences),
        "solutions_crc32": solutions.crc32(),
        "replays": replays,
        "restores": agent.restores,
        "replay_path": replay_path,
        "replay_path_why": why,
        "best_movie": None if movie is None else movie[0],
        "best_movie_reward": None if movie is None else movie[1],
        "config": {key: v for key, v in asdict(config).items() if key != "profile"},
    }


def drive_per_step(env, agent: JerkAgent, budget: int, seed: int, *, bar) -> int:
    """The parent picks every step's actions in a lock-step pool; the steps taken."""
    steps, num_envs = 0, env.num_envs
    env.reset(seed=seed)
    while steps < budget:
        _, rewards, terminated, truncated, _ = env.step(agent.act(None))
        agent.observe(rewards, terminated, truncated)
        if agent.pending_restores:  # exploit episodes that go on from a saved state
            env.restore(agent.pending_restores)
            agent.pending_restores.clear()
        steps += num_envs
        bar.update(num_envs)
    return steps


def drive_async_batches(env, agent: JerkAgent, budget: int, seed: int, *, bar) -> int:
    """The parent picks every step's actions for the first envs to finish; the steps taken."""
    steps = 0
    env.async_reset(seed=seed)
    started = np.zeros(env.num_envs, bool)
    while steps < budget:
        _, rewards, terminated, truncated, infos = env.recv()
        ids = infos["env_id"]
        # Each env's first result is its reset, not a step: nothing to account for.
        s = started[ids]
        if s.any():
            agent.observe(rewards[s], terminated[s], truncated[s], ids[s])
            steps += int(s.sum())
            bar.update(int(s.sum()))
        started[ids] = True
        env.send(agent.act(None, ids).copy(), ids)
    return steps


def drive_open_loop(
    env, agent: JerkAgent, budget: int, seed: int, *, bar=None, deadline=None, watch=None
) -> int:
    """Drive an async pool (``batch_size=1``, ``sequence_length``) stretch by stretch.

    Returns the steps run: ``budget``, or fewer if ``deadline`` (``time.perf_counter``) came
    first (no stretch is sent after it; the ones running are collected). ``bar``: a tqdm bar
    to advance. ``watch``: a :class:`fastretro.runtime.stats.Stopwatch` that times the agent's
    planning as "inference" and its bookkeeping as "learning" (``fastretro profile``).
    """
    from contextlib import nullcontext

    phase = watch or (lambda name: nullcontext())
    n = env.num_envs
    env.async_reset(seed=seed)
    running = n
    stretching = np.zeros(n, bool)  # the env's next result ends a stretch (not a reset/load)
    sent = np.zeros((n, env.sequence_length), np.int64)  # the actions each env is running
    reserved = np.zeros(n, np.int64)  # budget handed to each env in flight
    steps = 0
    while running:
        _, _, terminated, truncated, infos = env.recv()
        ids = infos["env_id"]
        running -= len(ids)
        ran = stretching[ids]
        if ran.any():
            done_ids, ran_steps = ids[ran], infos["sequence_steps"][ran]
            with phase("learning"):
                agent.observe_sequences(
                    done_ids,
                    sent[done_ids],
                    infos["sequence_rewards"][ran],
                    ran_steps,
                    terminated[ran],
                    truncated[ran],
                )
            steps += int(ran_steps.sum())
            if bar is not None:
                bar.update(int(ran_steps.sum()))
        stretching[ids] = True
        reserved[ids] = 0
        restores = dict(agent.pending_restores)
        agent.pending_restores.clear()
        left = budget - steps - int(reserved.sum())
        if left <= 0 or (deadline is not None and time.perf_counter() > deadline):
            continue  # spent: collect the stretches still running
        if restores:  # exploit episodes that go on from a saved state: load it first
            env.async_restore(restores)
            loading = np.fromiter(restores, np.int64)
            stretching[loading] = False  # their next result is the load, not a stretch
            running += len(loading)
            ids = ids[~np.isin(ids, loading)]
            if not len(ids):
                continue
        go = ids[: max(1, min(len(ids), left))]
        limits = np.full(len(go), min(env.sequence_length, left // len(go)))
        with phase("inference"):
            actions, lengths = agent.plan(go, limits)
        sent[go, : actions.shape[1]] = actions
        reserved[go] = lengths
        env.send_sequences(actions, lengths, go)
        running += len(go)
    return steps


def drive_lock_step(env, agent: JerkAgent, budget: int, seed: int, *, bar=None) -> int:
    """Drive a lock-step pool (``sequence_length``) stretch by stretch, deterministically.

    Every env runs its next stretch (:meth:`VecRetroEnv.step_sequences`); the agent then
    accounts for all of them in env order, and exploit episodes that go on from a saved state
    load it (:meth:`VecRetroEnv.restore`) before the next round. Nothing depends on which
    worker finished first, so a seed gives the same run. The budget left is shared evenly
    among the envs; a round needs a step of every env, so a run stops short of ``budget`` by
    less than ``num_envs`` steps. Returns the steps run.
    """
    n = env.num_envs
    env.reset(seed=seed)
    envs = np.arange(n, dtype=np.int64)
    steps = 0
    while budget - steps >= n:
        left = budget - steps
        limits = np.full(n, min(env.sequence_length, left // n), np.int64)
        actions, lengths = agent.plan(envs, limits)
        _, _, terminated, truncated, infos = env.step_sequences(actions, lengths)
        ran = infos["sequence_steps"]
        agent.observe_sequences(
            envs, actions, infos["sequence_rewards"], ran, terminated, truncated
        )
        steps += int(ran.sum())
        if bar is not None:
            bar.update(int(ran.sum()))
        if agent.pending_restores:  # exploit episodes that go on from a saved state
            env.restore(agent.pending_restores)
            agent.pending_restores.clear()
    return steps


def _replay_path(choice, game, state, num_envs, options, async_batches) -> tuple[str, str]:
    """``("state" | "reset", why)``: where exploit episodes start, for ``replay_from=choice``."""
    from fastretro.runtime.games import resolve_all
    from fastretro.runtime.worker import scenario_plan

    if choice == "reset":
        return "reset", "replay_from='reset' (the original)"
    config = EnvConfig(game=game, state=state, scenario=options.get("scenario"))
    setups = resolve_all(config, num_envs)
    engine = options.get("scenario_engine", "auto")
    unsound = [s for s in setups if scenario_plan(s, engine) is None]
    if unsound:
        why = (
            "the scenario keeps state outside the emulator, which a save state does not "
            f"carry ({unsound[0].scenario_plan_why_not or f'scenario_engine={engine!r}'})"
        )
    elif options.get("record") is not None:
        why = "the pool records .bk2 movies, which replay from reset"
    elif async_batches:
        why = "the async-batches driver replays from reset"
    else:
        return "state", "the scenario's reward and done read emulator memory only"
    if choice == "state":
        raise InvalidArgumentError(f"Cannot replay from saved states: {why}")
    return "reset", why


def _record_best(game, state, profile, sequence, options, movie_dir, seed):
    """Play ``sequence`` (then no-op) for one episode in a recording pool: (movie, reward)."""
    import glob
    import os

    from fastretro.runtime.pool import VecRetroEnv

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
    parser.add_argument(
        "--num-envs",
        type=int,
        default=1,
        help="explorers sharing one budget and their solutions (1: the original's one env)",
    )
    parser.add_argument("--timesteps", type=int, default=JerkConfig.TOTAL_TIMESTEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="only the JSON line at the end")
    parser.add_argument("--movie-dir", default=None, help="record the best sequence here (.bk2)")
    parser.add_argument(
        "--per-step",
        action="store_true",
        help="the parent picks every step's actions in a lock-step pool (slower) instead of "
        "each env running whole moves in its worker",
    )
    parser.add_argument(
        "--replay-from",
        choices=("auto", "state", "reset"),
        default="reset",
        help="exploit episodes replay the best sequence from reset as the original (reset, the "
        "default) or load its saved state and explore on (state; where sound: auto)",
    )
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="each env goes on as soon as its move is over (faster with several envs; the run "
        "then depends on timing) instead of lock-step rounds (the same seed, the same run)",
    )
    args = parser.parse_args(argv)
    config = JerkConfig(seed=args.seed, replay_from=args.replay_from, deterministic=not args.async_)
    try:
        result = run(
            args.game,
            args.state,
            args.num_envs,
            config,
            progress=not args.json,
            timesteps=args.timesteps,
            movie_dir=args.movie_dir,
            open_loop=not args.per_step,
        )
    except FastRetroError as exc:
        print(f"fastretro jerk: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
