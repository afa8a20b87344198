"""Stage 1, ``collect``: rollouts of a policy on the pool, written as shards.

Each env plays whole episodes, frames resized to ``frame_size`` RGB in the workers. The parent
books each step while the emulators take the next one, and a background thread compresses the
shards (:mod:`fastretro.agents.world_models.shards`), so the loop runs near the pool's rate.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from fastretro.agents.harness import n_actions_of
from fastretro.agents.world_models.agent import make_eval_agent
from fastretro.agents.world_models.config import WorldModelsConfig, make_pool, pool_description
from fastretro.agents.world_models.runfolder import save_config, write_json
from fastretro.agents.world_models.shards import shard_episodes, shard_paths, write_shard


class _ShardWriter:
    """Writes shards on one background thread while the pool steps on.

    zlib releases the GIL, so compressing a shard does not stall the lock-step loop, where the
    pool would idle (``fastretro world-models collect --json``: ``write_seconds`` is the loop's
    time blocked on the writer). One shard is in flight at most: ``submit`` waits for the
    previous one, which bounds memory and raises its error in the loop. ``close`` finishes the
    shard in flight (written atomically), so a stopped ``collect`` loses only unsubmitted
    episodes.
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")
        self._last = None

    def submit(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the thread, once the shard in flight is written."""
        self.wait()
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        """Block until the shard in flight is written; raise what writing it raised."""
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class _Episodes:
    """Every env's running episode, and the ended ones waiting to be written as a shard."""

    def __init__(
        self,
        cfg: WorldModelsConfig,
        run_dir: str,
        num_envs: int,
        n_actions: int,
        missing: int,
        first_shard: int,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        self.cfg, self.run_dir, self.n, self.n_actions = cfg, run_dir, num_envs, n_actions
        self.missing = missing
        self.running = [_new_episode() for _ in range(num_envs)]
        self.pending: list[dict] = []
        self.pending_steps = 0
        self.added = 0
        self.write_s = 0.0  # the loop's time blocked on the writer
        self.writer = _ShardWriter()
        self.index = first_shard
        self.bar = tqdm(total=missing, unit="episode", disable=not progress, desc="collect")

    def book(self, observed, actions, rewards, terminated, truncated) -> None:
        """Add one step of every env to its episode; queue the episodes that ended."""
        ends = (terminated | truncated).tolist()
        for i, a, r, t, end in zip(
            range(self.n), actions.tolist(), rewards.tolist(), terminated.tolist(), ends
        ):
            ep = self.running[i]
            ep["observations"].append(observed[i])
            ep["actions"].append(a)
            ep["rewards"].append(r)
            ep["terminated"].append(t)
            if end:
                if self.added < self.missing:
                    done = {k: np.asarray(v) for k, v in ep.items()}
                    self.pending.append(done)
                    self.pending_steps += len(done["actions"])
                    self.added += 1
                    self.bar.update(1)
                self.running[i] = _new_episode()
        if self.pending and (
            self.pending_steps >= self.cfg.shard_steps or self.added == self.missing
        ):
            self._submit()

    def _submit(self) -> None:
        """Hand the queued episodes to the writer as the next shard."""
        path = os.path.join(self.run_dir, "shards", f"shard_{self.index:06d}.npz")
        w0 = time.perf_counter()
        self.writer.submit(write_shard, path, self.pending, self.cfg, self.n_actions)
        self.write_s += time.perf_counter() - w0
        self.index += 1
        self.pending, self.pending_steps = [], 0

    def flush(self) -> None:
        """Wait for the last shard; raise what writing it raised."""
        w0 = time.perf_counter()
        self.writer.wait()
        self.write_s += time.perf_counter() - w0

    def close(self) -> None:
        """Close the progress bar; finish the shard in flight."""
        self.bar.close()
        self.writer.close()


def _actor(cfg: WorldModelsConfig, run_dir: str, pool, policy, rng, n_actions: int):
    """``(act, observe)`` of the collecting policy; ``observe`` is None where it keeps no state.

    ``act(observations) -> actions`` is the given ``policy``, else ``cfg.collect_policy``:
    uniform over the action set, or the run's evolved controller.
    """
    n = pool.num_envs
    if policy is not None:
        return (lambda obs: np.asarray(policy(obs)).reshape(n)), None
    if cfg.collect_policy == "controller":
        # Made after the pool: its workers fork from a parent whose torch has no threads yet.
        agent = make_eval_agent(run_dir, cfg=cfg)(pool.single_observation_space, pool.action_space)
        return agent.act, agent.observe
    return (lambda obs: rng.integers(0, n_actions, n)), None


def _roll_out(pool, obs: np.ndarray, episodes: _Episodes, act, observe) -> int:
    """Step the pool until the missing episodes have ended; return the agent steps taken.

    A step is booked while the emulators take the next one.
    """
    steps = 0
    last = None  # the step whose bookkeeping runs while the next one steps
    while True:
        actions = act(obs)
        observed = obs.copy()  # the pool writes the next step's frames over obs
        pool.step_async(actions)
        if last is not None:  # the emulators step meanwhile
            episodes.book(*last)
        obs, rewards, terminated, truncated, _ = pool.step_wait()
        steps += pool.num_envs
        if observe is not None:
            observe(rewards, terminated, truncated)
        last = (observed, actions, rewards, terminated, truncated)
        if episodes.added >= episodes.missing:  # the step just taken belongs to no kept episode
            return steps


def collect(
    cfg: WorldModelsConfig,
    run_dir: str,
    *,
    policy: Callable[[np.ndarray], np.ndarray] | None = None,
    progress: bool = True,
) -> dict:
    """Roll out until the shard folder holds ``cfg.collect_episodes`` episodes.

    Each env plays whole episodes; an episode is kept when it ends and written with others as
    a shard once they hold ``shard_steps`` steps (the last shard may hold fewer). A call that
    is stopped loses only its unwritten episodes: the next call counts the shards and continues.

    Args:
        cfg: the run's settings.
        run_dir: the run folder (shards go to ``run_dir/shards``).
        policy: ``policy(observations) -> actions``: (num_envs, S, S, 3) uint8 to (num_envs,)
            action indices; None: ``cfg.collect_policy``.
        progress: show a progress bar.

    Returns:
        The summary also written to ``collect.json``: episodes and steps added, frames, seconds,
        the loop's frames/s (with and without the time it spent blocked on the shard writer,
        ``write_seconds``) and the pool's (its counters' frames over the loop's wall-clock; frames
        = agent steps x frameskip, all envs), the pool configuration.
    """
    cfg.check()
    os.makedirs(os.path.join(run_dir, "shards"), exist_ok=True)
    paths = shard_paths(run_dir)
    have = sum(shard_episodes(p, cfg) for p in paths)
    missing = cfg.collect_episodes - have
    summary = {
        "stage": "collect",
        "episodes_before": have,
        "episodes_added": 0,
        "steps": 0,
        "frames": 0,
        "seconds": 0.0,
        "frames_per_s": None,
        "pool_frames_per_s": None,
        "pool": pool_description(cfg, cfg.num_envs),
    }
    if missing <= 0:
        write_json(os.path.join(run_dir, "collect.json"), summary)
        save_config(cfg, run_dir)
        return summary
    # A resumed call must not replay the episodes already written: its seeds start past them.
    seed = cfg.seed * 1_000_003 + have * cfg.num_envs
    rng = np.random.default_rng(seed)
    pool = make_pool(cfg, autoreset_mode="same_step")
    start = time.perf_counter()
    try:
        n_actions = n_actions_of(pool.single_action_space)
        act, observe = _actor(cfg, run_dir, pool, policy, rng, n_actions)
        obs, _ = pool.reset(seed=seed)
        pool.reset_stats()
        t0 = time.perf_counter()
        episodes = _Episodes(cfg, run_dir, pool.num_envs, n_actions, missing, len(paths), progress)
        try:
            steps = _roll_out(pool, obs, episodes, act, observe)
            episodes.flush()
        finally:
            episodes.close()
        seconds = time.perf_counter() - t0
        stats = pool.stats()
    finally:
        pool.close()
    frames = steps * cfg.frameskip
    write_s = episodes.write_s
    summary.update(
        episodes_added=episodes.added,
        steps=steps,
        frames=frames,
        seconds=round(time.perf_counter() - start, 3),
        loop_seconds=round(seconds, 3),
        write_seconds=round(write_s, 3),
        frames_per_s=round(frames / seconds, 1),
        frames_per_s_without_writing=round(frames / (seconds - write_s), 1),
        pool_frames_per_s=round(stats.frames_per_s, 1),
        workers_cpu_use=round(stats.utilization, 3),
        shards=len(shard_paths(run_dir)),
    )
    write_json(os.path.join(run_dir, "collect.json"), summary)
    save_config(cfg, run_dir)
    return summary


def _new_episode() -> dict:
    """An episode's lists, empty."""
    return {"observations": [], "actions": [], "rewards": [], "terminated": []}
