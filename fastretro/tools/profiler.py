"""``fastretro profile``: run an agent for a fixed budget and show where the wall-clock went.

The parent process is one thread, so its time splits exactly into: the agent's inference, the
agent's learning, time blocked in the pool (waiting for the emulators), and everything else
(Python glue, copies, logging). The workers' counters (``VecRetroEnv.stats()``) split the
blocked time further: the CPU the emulators needed, packed onto the cores they had, and the
rest, which is the handshake, wake-ups and load imbalance (the slowest env of a lock-step
batch). The emulators' side is reported too: how busy the cores they could use were, and on
what (emulation, RAM/reward reads, observations, resets).

Agents: ``random``, ``jerk``, ``ppo`` (fastretro's PPO2, learning included), or
``module:function``, called as ``function(pool, watch, deadline)``: it drives the given
``VecRetroEnv`` until ``time.perf_counter() >= deadline``, timing its own phases with
``with watch("inference"): ...`` and ``with watch("learning"): ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from fastretro import DEFAULT_GAME, contest
from fastretro.agents import registry
from fastretro.errors import InvalidArgumentError
from fastretro.runtime.stats import PoolStats, Stopwatch, available_cores

#: ``--agent`` names: the random agent and the registry's agents the profiler runs.
AGENTS = ("random", *(a.profile for a in registry.AGENTS.values() if a.profile))


@dataclass
class Profile:
    """Where one run's wall-clock went (seconds) and what to do about it."""

    agent: str
    game: str
    num_envs: int
    cores: int
    wall_s: float
    inference_s: float
    learning_s: float
    env_work_s: float
    handshake_s: float
    other_s: float
    emulator_busy: float
    emulator_phases: dict
    frames: int
    frames_per_s: float
    advice: str
    overhead_us: dict = field(default_factory=dict)
    """The pool's own costs per batch, in microseconds (``PoolStats.overhead()``)."""

    def rows(self) -> list[tuple[str, float]]:
        """The parent's timeline: (what, seconds), summing to ``wall_s``."""
        return [
            ("agent inference", self.inference_s),
            ("agent learning", self.learning_s),
            ("env: emulators working", self.env_work_s),
            ("env: handshake, wake-ups, imbalance", self.handshake_s),
            ("other (Python glue, copies, logs)", self.other_s),
        ]

    def table(self) -> str:
        """The report as text."""
        lines = [
            f"fastretro profile: agent {self.agent}, {self.game}, {self.num_envs} envs on "
            f"{self.cores} core(s), {self.wall_s:.1f} s, {self.frames:,} frames "
            f"({self.frames_per_s:,.0f} frames/s)",
            "",
            f"{'where the wall-clock went':<40}{'seconds':>9}{'share':>8}",
        ]
        for name, sec in self.rows():
            lines.append(f"{name:<40}{sec:>9.2f}{100 * sec / self.wall_s:>7.1f}%")
        if self.overhead_us:
            lines += [
                "",
                "the pool's own costs per batch (us): "
                + ", ".join(f"{k.replace('_', ' ')} {v:.0f}" for k, v in self.overhead_us.items()),
            ]
        lines += [
            "",
            f"emulator cores busy: {100 * self.emulator_busy:.0f}% of "
            f"{min(self.cores, self.num_envs)} core(s); their busy time: "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in self.emulator_phases.items()),
            "",
            f"advice: {self.advice}",
        ]
        return "\n".join(lines)


def analyse(agent: str, game: str, stats: PoolStats, watch: Stopwatch, wall_s: float) -> Profile:
    """Combine the pool's counters and the agent's stopwatch into a :class:`Profile`."""
    n = len(stats.steps)
    k = min(stats.cores, n)
    inference = watch.seconds.get("inference", 0.0)
    learning = watch.seconds.get("learning", 0.0)
    blocked = min(stats.parent_wait_s, wall_s)
    # The emulators' CPU time packed onto the cores they could use: the least the parent could
    # have waited for them. What it waited beyond that is handshake and imbalance.
    work = min(float(np.nansum(stats.cpu_s)) / k, blocked) if k else 0.0
    handshake = blocked - work
    other = max(0.0, wall_s - inference - learning - blocked)
    busy = float(np.nansum(stats.cpu_s)) / (k * wall_s) if k and wall_s > 0 else 0.0
    frames = int(stats.frames.sum())
    return Profile(
        agent=agent,
        game=game,
        num_envs=n,
        cores=stats.cores,
        wall_s=wall_s,
        inference_s=inference,
        learning_s=learning,
        env_work_s=work,
        handshake_s=handshake,
        other_s=other,
        emulator_busy=min(busy, 1.0),
        emulator_phases=stats.phase_fractions(),
        frames=frames,
        frames_per_s=frames / wall_s if wall_s > 0 else 0.0,
        overhead_us=stats.overhead() if stats.wakeups is not None else {},
        advice=advise(
            busy,
            (inference + learning) / wall_s,
            handshake / wall_s,
            n,
            stats.cores,
            learning_share=learning / wall_s,
        ),
    )


def advise(
    busy: float,
    agent_share: float,
    overhead_share: float,
    num_envs: int,
    cores: int,
    learning_share: float = 0.0,
) -> str:
    """One sentence: what bounds this run, and what would (not) help."""
    k = min(cores, num_envs)
    if busy >= 0.85:
        return (
            f"env-bound: the emulators keep {k} core(s) {100 * busy:.0f}% busy; more envs will "
            f"not help ({cores} core(s) are saturated) and neither will a faster agent; "
            "cheaper steps (frameskip, observe=False) or more machines "
            "(fastretro.integrations.ray) will."
        )
    if agent_share >= 0.5 and learning_share >= agent_share / 2:
        return (
            f"learning-bound: updates take {100 * learning_share:.0f}% of the wall-clock and "
            "the emulators idle through them (on-policy: they wait for the new weights); fewer "
            "epochs or minibatches, a smaller network, or a GPU will help, more envs will not."
        )
    if agent_share >= 0.5:
        return (
            f"agent-bound: the agent takes {100 * agent_share:.0f}% of the wall-clock and the "
            f"emulators are idle {100 * (1 - busy):.0f}% of the time; overlap acting and "
            "stepping (ppo --overlap, or the pool's batch_size), or cut the agent's work "
            "(smaller network, fewer epochs, torch threads)."
        )
    if num_envs < cores:
        return (
            f"under-subscribed: {num_envs} env(s) on {cores} cores leave "
            f"{cores - num_envs} core(s) without an emulator; add envs."
        )
    if overhead_share >= 0.2:
        return (
            f"overhead-bound: {100 * overhead_share:.0f}% of the wall-clock is handshake, "
            "wake-ups and imbalance between envs; a larger frameskip or the async mode "
            "(batch_size) amortises it."
        )
    return (
        f"balanced: emulators {100 * busy:.0f}% busy, agent {100 * agent_share:.0f}% of the "
        "wall-clock; no single bottleneck dominates."
    )


def plot(profile: Profile, path: str) -> str:
    """A PNG: the parent's timeline as one stacked bar, the emulator cores' use as another."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(9, 3.6), gridspec_kw={"hspace": 1.1})
    colors = ["#4c72b0", "#8172b2", "#55a868", "#c44e52", "#999999"]
    left = 0.0
    for (name, sec), color in zip(profile.rows(), colors):
        share = 100 * sec / profile.wall_s
        axes[0].barh(0, share, left=left, color=color, label=f"{name} {share:.0f}%")
        left += share
    axes[0].set_xlim(0, 100)
    axes[0].set_yticks([])
    axes[0].set_xlabel("% of the parent's wall-clock")
    axes[0].set_title(
        f"{profile.agent} on {profile.game}, {profile.num_envs} envs, "
        f"{profile.frames_per_s:,.0f} frames/s",
        fontsize=10,
    )
    axes[0].legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=3, fontsize=7, frameon=False
    )
    left = 0.0
    phase_colors = ["#55a868", "#dd8452", "#64b5cd", "#8c8c8c"]
    for (name, frac), color in zip(profile.emulator_phases.items(), phase_colors):
        share = 100 * profile.emulator_busy * frac
        axes[1].barh(0, share, left=left, color=color, label=f"{name} {share:.0f}%")
        left += share
    axes[1].barh(0, 100 - left, left=left, color="#eeeeee", label=f"idle {100 - left:.0f}%")
    axes[1].set_xlim(0, 100)
    axes[1].set_yticks([])
    axes[1].set_xlabel(f"% of the {min(profile.cores, profile.num_envs)} emulator core(s)")
    axes[1].legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=5, fontsize=7, frameon=False
    )
    fig.text(0.5, -0.12, textwrap.fill(profile.advice, 130), fontsize=8, ha="center", va="top")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# -- running the agents ------------------------------------------------------------------------


def _pool(game: str, state: str | None, num_envs: int, **options):
    """The profiled pool: the contest's rules and the 84x84 gray stack learning agents use."""
    from fastretro.config import EnvConfig, split_options
    from fastretro.runtime.pool import VecRetroEnv

    env_options, pool_options = split_options(options)
    observation = dict(grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4)
    config = EnvConfig.contest(game, state, **{**observation, **env_options})
    return VecRetroEnv(config, num_envs, **{"autoreset_mode": "same_step", **pool_options})


def _drive(pool, act: Callable, observe: Callable | None, watch: Stopwatch, deadline: float):
    obs, _ = pool.reset(seed=0)
    pool.reset_stats()
    while time.perf_counter() < deadline:
        with watch("inference"):
            actions = act(obs)
        obs, rewards, terminated, truncated, _ = pool.step(actions)
        if observe is not None:
            with watch("learning"):
                observe(rewards, terminated, truncated)


def run_agent(
    agent: str,
    game: str,
    state: str | None,
    num_envs: int,
    seconds: float,
    ppo_options: dict | None = None,
) -> tuple[PoolStats, Stopwatch, float]:
    """Run ``agent`` for ``seconds``; return the pool's stats, the agent's stopwatch, the wall.

    ``ppo_options``: config fields of a learning agent (``ppo``, ``rainbow``), and ``run_dir``
    (default: a private temporary folder, removed afterwards).
    """
    watch = Stopwatch()
    spec = registry.get(agent) if agent in AGENTS and agent != "random" else None
    if spec is not None and "train" in spec.load():  # a learner: PPO2, Rainbow
        return _run_learner(spec, game, state, num_envs, seconds, watch, ppo_options or {})
    if agent == "random":
        pool = _pool(game, state, num_envs)
        space = pool.action_space
        space.seed(0)
        act, observe = (lambda obs: space.sample()), None
    elif agent == "jerk":
        from fastretro.agents.jerk import JerkAgent
        from fastretro.config import EnvConfig

        # As `fastretro jerk` runs it: whole moves and replays in the workers (open loop), each
        # env on its own; the contest's scenario where the game has one.
        scenario = EnvConfig.contest(game, state).scenario
        pool = registry.get("jerk").pool()(game, state, num_envs, batch_size=1, scenario=scenario)
        jerk = JerkAgent(None, pool.action_space, horizon=contest.MAX_EPISODE_STEPS)
    else:
        func = _load_function(agent)
        pool = _pool(game, state, num_envs)
    try:
        start = time.perf_counter()
        deadline = start + seconds
        if agent == "random":
            _drive(pool, act, observe, watch, deadline)
        elif agent == "jerk":
            from fastretro.agents.jerk import drive_open_loop

            pool.reset_stats()
            drive_open_loop(pool, jerk, 2**62, 0, deadline=deadline, watch=watch)
        else:
            pool.reset(seed=0)
            pool.reset_stats()
            start = time.perf_counter()
            func(pool, watch, start + seconds)
        wall = time.perf_counter() - start
        return pool.stats(), watch, wall
    finally:
        pool.close()


def _run_learner(agent: registry.AgentSpec, game, state, num_envs, seconds, watch, options):
    """Train PPO2 or Rainbow for ``seconds``; the pools' stats over the training loop."""
    # Rainbow's defaults are its fast preset.
    Config, train = agent.config(), agent.train()  # noqa: N806 - a class
    options = dict(options)
    run_dir = options.pop("run_dir", None)
    cfg = Config(game=game, state=state, num_envs=num_envs, total_frames=10**12, **options)
    snapshots: list[PoolStats] = []

    def on_loop(phase, pools):
        # The window is the training loop itself: not start-up, not the final checkpoint.
        for p in pools:
            if phase == "start":
                p.reset_stats()
            else:
                snapshots.append(p.stats())

    if run_dir is None:
        # The run's checkpoints are thrown away: a private folder (mode 0700, a name nobody can
        # guess or plant a link at beforehand), removed afterwards.
        with tempfile.TemporaryDirectory(prefix="fastretro-profile-") as tmp:
            train(cfg, tmp, watch=watch, progress=False, max_seconds=seconds, on_loop=on_loop)
    else:
        train(cfg, run_dir, watch=watch, progress=False, max_seconds=seconds, on_loop=on_loop)
    stats = _merge(snapshots)
    return stats, watch, stats.wall_s


def _merge(snapshots: list[PoolStats]) -> PoolStats:
    if len(snapshots) == 1:
        return snapshots[0]
    arrays = {}
    for name in (
        "emulate_s",
        "ram_s",
        "obs_s",
        "reset_s",
        "wait_s",
        "cpu_s",
        "steps",
        "frames",
        "resets",
        "wake_s",
        "wakeups",
    ):
        arrays[name] = np.concatenate([getattr(s, name) for s in snapshots])
    return PoolStats(
        wall_s=max(s.wall_s for s in snapshots),
        parent_wait_s=sum(s.parent_wait_s for s in snapshots),
        cores=snapshots[0].cores,
        parent_stage_s=sum(s.parent_stage_s for s in snapshots),
        parent_wake_s=sum(s.parent_wake_s for s in snapshots),
        parent_collect_s=sum(s.parent_collect_s for s in snapshots),
        batches=sum(s.batches for s in snapshots),
        **arrays,
    )


def _load_function(spec: str) -> Callable:
    from fastretro.contest.evaluate import import_callable

    return import_callable(spec, AGENTS, "function")


def main(argv: list[str] | None = None) -> int:
    """``fastretro profile``: where an agent's wall-clock goes, as a table and a PNG."""
    parser = argparse.ArgumentParser(
        prog="fastretro profile",
        description="Run an agent on the pool for a fixed time and report where the "
        "wall-clock went (table, PNG, one line of advice).",
    )
    parser.add_argument(
        "--agent", default="random", help=f"one of {', '.join(AGENTS)}, or module:function"
    )
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--state", default=None)
    parser.add_argument("--num-envs", type=int, default=available_cores() * 2)
    parser.add_argument("--seconds", type=float, default=20.0, help="budget (wall-clock)")
    parser.add_argument("--out", default="profile", help="folder for profile.png/.json")
    parser.add_argument("--ppo-overlap", action="store_true", help="ppo: the overlap mode")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    if args.num_envs < 1:
        parser.error(f"Expected --num-envs >= 1, got {args.num_envs}")
    if not args.seconds > 0:
        parser.error(f"Expected --seconds > 0, got {args.seconds}")
    try:
        stats, watch, wall = run_agent(
            args.agent,
            args.game,
            args.state,
            args.num_envs,
            args.seconds,
            {"overlap": True} if args.ppo_overlap else None,
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    report = analyse(args.agent, args.game, stats, watch, wall)
    os.makedirs(args.out, exist_ok=True)
    png = plot(report, os.path.join(args.out, "profile.png"))
    with open(os.path.join(args.out, "profile.json"), "w") as f:
        json.dump(asdict(report), f, indent=1)
    print(report.table())
    print(f"\nwrote {png} and {os.path.join(args.out, 'profile.json')}")
    if args.json:
        print(json.dumps(asdict(report)))
    return 0
