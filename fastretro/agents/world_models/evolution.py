"""Stage 4, ``evolve``: CMA-ES (pycma) over the controller, candidates side by side on the pool.

A generation's candidates run on an async pool (``batch_size=M``), one episode per env at a
time: V's encoder, M's LSTM and the controllers run batched over whichever M envs finished
their step first (:class:`Evaluator`), so no env waits for the slowest.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fastretro.agents.cma_state import es_from_state
from fastretro.agents.common import torch
from fastretro.agents.harness import n_actions_of
from fastretro.agents.world_models.config import WorldModelsConfig, make_pool, pool_description
from fastretro.agents.world_models.controller import (
    Policies,
    controller_size,
    load_controller,
    load_world_model,
    save_controller,
)
from fastretro.agents.world_models.runfolder import Scalars, save_config, write_json
from fastretro.errors import InvalidArgumentError


class Evaluator:
    """Runs generations of candidates on an async pool (``batch_size=M``), one episode per env.

    The pool keeps running across generations. A job is one episode of one candidate. An env
    whose episode ends takes the next job at once (``same_step`` autoreset hands it the new
    episode's first frame); V, M and the
    candidates' controllers act batched over the M envs of each ``recv``. Near a generation's
    end fewer than M envs may have a job: ``recv`` needs M running, so envs without a job
    take "filler" steps (action 0, not counted) as needed, envs at an episode's first frame
    last, since only those can start the next generation's jobs. An env left in the middle of
    a filler episode finishes it with filler steps before it takes a job. The pool is reset
    once, at the start: a generation ends without draining the pool (``recv`` takes whole
    batches, and ``async_reset`` after a drain would leave its handshake armed twice).
    """

    def __init__(self, pool, policies: Policies, seed: int) -> None:
        n = pool.num_envs
        self.pool, self.policies, self.m = pool, policies, pool.batch_size
        self.obs = np.zeros((n, *pool.single_observation_space.shape), np.uint8)
        self.running = np.ones(n, bool)  # sent, not yet returned by recv
        self.fresh = np.ones(n, bool)  # self.obs[i] is an episode's first frame
        self.filler_steps = 0
        pool.async_reset(seed=seed)

    def run(self, candidates: np.ndarray, episodes: int) -> tuple[np.ndarray, dict]:
        """Every candidate's return over ``episodes`` episodes.

        Args:
            candidates: (P, controller_size) float: each row a controller's W then b.
            episodes: episodes per candidate.

        Returns:
            Returns (P, episodes) and counts: ``steps`` of the counted episodes and
            ``filler_steps``.
        """
        n = self.pool.num_envs
        pop = len(candidates)
        weights = torch.from_numpy(np.asarray(candidates, np.float32))
        jobs = deque(c for e in range(episodes) for c in range(pop))
        total = len(jobs)
        returns: list[list[float]] = [[] for _ in range(pop)]
        job = np.full(n, -1)
        ep_return = np.zeros(n)
        ep_steps = np.zeros(n, np.int64)
        steps = finished = 0
        filler_before = self.filler_steps
        ready = np.flatnonzero(~self.running)
        while True:
            self._dispatch(ready, jobs, job, weights, ep_steps)
            obs, rewards, terminated, truncated, infos = self.pool.recv()
            ids = infos["env_id"]
            self.running[ids] = False
            self.obs[ids] = obs
            ep_return[ids] += rewards
            for j in np.flatnonzero(terminated | truncated):
                i = ids[j]
                if job[i] >= 0:
                    returns[job[i]].append(float(ep_return[i]))
                    steps += int(ep_steps[i])
                    finished += 1
                    job[i] = -1
                ep_return[i], ep_steps[i] = 0.0, 0
                self.fresh[i] = True
                self.policies.reset([i])
            if finished == total:
                break
            ready = ids
        return np.array(returns), {
            "steps": steps,
            "filler_steps": self.filler_steps - filler_before,
        }

    def _dispatch(self, ready, jobs: deque, job, weights, ep_steps) -> None:
        """Send the ready envs their next step: a job's action, a filler step, or nothing."""
        for i in ready:
            if job[i] < 0 and self.fresh[i] and jobs:
                job[i] = jobs.popleft()
        ready = np.asarray(ready, np.int64)
        working = ready[job[ready] >= 0]
        if working.size:
            actions = self.policies.act(self.obs[working], working, weights[job[working]])
            self.pool.send(actions, working)
            ep_steps[working] += 1
            self.running[working] = True
            self.fresh[working] = False
        idle = np.flatnonzero(~self.running)
        # While jobs wait, an env in the middle of an episode steps on to free itself; and
        # recv needs M envs running: the rest of them come from the idle, mid-episode first.
        filler = [i for i in idle if jobs and not self.fresh[i]]
        short = self.m - int(self.running.sum()) - len(filler)
        if short > 0:
            rest = sorted((i for i in idle if i not in filler), key=lambda i: self.fresh[i])
            filler += rest[:short]
        if filler:
            ids = np.array(filler, np.int64)
            self.pool.send(np.zeros(len(ids), np.int64), ids)
            self.running[ids] = True
            self.fresh[ids] = False
            self.filler_steps += len(ids)


@dataclass
class _Evolution:
    """Where a run of ``evolve`` stands: the ES, the best candidate seen, the rows so far."""

    es: object
    """pycma's ``CMAEvolutionStrategy``."""
    first: int
    """The generation this call started at (the generations a checkpoint had done)."""
    frames: int
    """Frames of counted episodes, over every call."""
    history: list
    """One row per generation, over every call."""
    best: dict
    """The best candidate seen: ``params``, ``fitness``, ``generation``."""
    # This call's seconds in generations, the frames of their counted episodes, the pool's
    # frames (filler steps included) and the filler steps.
    loop_s: float = 0.0
    counted_frames: int = 0
    pool_frames: int = 0
    filler_total: int = 0
    stats: object = None
    """The pool's counters at the last generation's end."""

    def generation(self, gen: int, evaluator: Evaluator, pool, cfg: WorldModelsConfig) -> dict:
        """Ask CMA-ES for candidates, run them, tell it their mean returns; the row."""
        t0 = time.perf_counter()
        before = int(pool.stats().frames.sum())
        xs = self.es.ask()
        returns, counts = evaluator.run(np.array(xs), cfg.episodes_per_candidate)
        fitness = returns.mean(1)
        self.es.tell(xs, (-fitness).tolist())
        seconds = time.perf_counter() - t0
        gen_frames = counts["steps"] * cfg.frameskip
        gen_pool_frames = int(pool.stats().frames.sum()) - before
        self.loop_s += seconds
        self.counted_frames += gen_frames
        self.pool_frames += gen_pool_frames
        self.filler_total += counts["filler_steps"]
        self.frames += gen_frames
        k = int(np.argmax(fitness))
        if fitness[k] > self.best["fitness"]:
            self.best = {"params": np.array(xs[k]), "fitness": float(fitness[k]), "generation": gen}
        row = {
            "generation": gen + 1,
            "frames": self.frames,
            "return/best": float(fitness.max()),
            "return/mean": float(fitness.mean()),
            "return/worst": float(fitness.min()),
            "return/best_ever": self.best["fitness"],
            "cma/sigma": float(self.es.sigma),
            "seconds": round(seconds, 3),
            "time/frames_per_s": round(gen_frames / seconds, 1),
            "time/pool_frames_per_s": round(gen_pool_frames / seconds, 1),
            "filler_steps": counts["filler_steps"],
        }
        self.history.append(row)
        return row


def _start_evolution(
    cfg: WorldModelsConfig, ckpt: dict | None, path: str, size: int, new_es: Callable
) -> _Evolution:
    """The checkpoint's evolution, continued, or a new one from zero weights.

    ``new_es``: pycma's ``CMAEvolutionStrategy`` (imported by the caller before the pool starts).
    """
    if ckpt is None:
        # pycma seeds numpy's global generator (its seed 0 would mean "from the clock").
        es = new_es(
            np.zeros(size),
            cfg.sigma0,
            {
                "popsize": cfg.popsize,
                "seed": cfg.seed + 1,
                "CMA_diagonal": cfg.cma_diagonal,
                "verbose": -9,
            },
        )
        best = {"params": np.zeros(size), "fitness": -math.inf, "generation": -1}
        return _Evolution(es, 0, 0, [], best)
    if len(ckpt["best_params"]) != size:
        raise InvalidArgumentError(
            f"{path!r} holds a controller of {len(ckpt['best_params'])} parameters; "
            f"this run's V and M need {size}: evolve into another run folder"
        )
    es = es_from_state(ckpt["es"], path)  # numpy's generator set back too
    best = {
        "params": np.asarray(ckpt["best_params"]),
        "fitness": float(ckpt["best_fitness"]),
        "generation": int(ckpt["best_generation"]),
    }
    return _Evolution(es, int(ckpt["generation"]), int(ckpt["frames"]), list(ckpt["history"]), best)


def evolve(cfg: WorldModelsConfig, run_dir: str, *, progress: bool = True) -> dict:
    """Evolve C with CMA-ES until ``cfg.generations`` generations; write controller.pt.

    The controller starts at zero weights; each generation asks CMA-ES for ``popsize``
    candidates, runs each for ``episodes_per_candidate`` episodes on the async pool
    (:class:`Evaluator`), and tells it their mean returns. An existing ``controller.pt``
    is continued (the CMA-ES state is in it). Writes ``evolution.csv`` (best, mean and worst
    return per generation, frames, the pool's frames/s), TensorBoard scalars,
    ``evolution.png`` and ``evolve.json``.

    Returns:
        The summary also written to ``evolve.json``: generations, frames of counted episodes,
        the best fitness, seconds, the loop's frames/s (counted episodes) and the pool's
        (every emulator frame, filler steps included), the pool configuration.
    """
    import cma

    cfg.check()
    start = time.perf_counter()
    path = os.path.join(run_dir, "controller.pt")
    ckpt = load_controller(path, cfg) if os.path.exists(path) else None
    # The pool first: its workers fork from a parent whose torch has started no threads yet.
    pool = make_pool(cfg, batch_size=cfg.batch_size, autoreset_mode="same_step")
    try:
        n_actions = n_actions_of(pool.single_action_space)
        vae, mdn = load_world_model(run_dir, cfg, n_actions)
        size = controller_size(vae.z_size, mdn.hidden, n_actions)
        run = _start_evolution(cfg, ckpt, path, size, cma.CMAEvolutionStrategy)
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        policies = Policies(vae, mdn, pool.num_envs)
        evaluator = Evaluator(pool, policies, seed=cfg.seed + 7919 * (run.first + 1))
        _generations(cfg, run_dir, run, evaluator, pool, start, path, n_actions, progress)
    finally:
        pool.close()
    picture = os.path.join(run_dir, "evolution.png")
    if run.history:
        plot_evolution(run.history, picture)
    summary = {
        "stage": "evolve",
        "generations": cfg.generations,
        "generations_run": len(run.history) - run.first,
        "parameters": size,
        "frames": run.frames,
        "best_fitness": run.best["fitness"],
        "best_generation": run.best["generation"],
        "last": run.history[-1] if run.history else None,
        "seconds": round(time.perf_counter() - start, 3),
        "loop_seconds": round(run.loop_s, 3),
        "frames_per_s": round(run.counted_frames / run.loop_s, 1) if run.loop_s else None,
        "pool_frames_per_s": round(run.pool_frames / run.loop_s, 1) if run.loop_s else None,
        "pool_frames_per_s_stats": round(run.stats.frames_per_s, 1),
        "workers_cpu_use": round(run.stats.utilization, 3),
        "filler_steps": run.filler_total,
        "pool": pool_description(cfg, cfg.num_envs, cfg.batch_size),
        "picture": picture,
    }
    write_json(os.path.join(run_dir, "evolve.json"), summary)
    save_config(cfg, run_dir)
    return summary


def _generations(cfg, run_dir, run: _Evolution, evaluator, pool, start, path, n_actions, progress):
    """Run generations until ``cfg.generations`` or ``cfg.evolve_seconds``; log and save each.

    ``start``: the ``time.perf_counter()`` the stage started at (``evolve_seconds`` counts
    from there).
    """
    from tqdm import tqdm

    logger = Scalars(run_dir, "evolution.csv", resume=run.first > 0)
    bar = tqdm(
        total=max(0, cfg.generations - run.first), unit="gen", disable=not progress, desc="evolve"
    )
    pool.reset_stats()
    try:
        for gen in range(run.first, cfg.generations):
            if cfg.evolve_seconds and time.perf_counter() - start > cfg.evolve_seconds:
                break
            row = run.generation(gen, evaluator, pool, cfg)
            logger.row(row, step=gen + 1)
            bar.update(1)
            bar.set_postfix(best=f"{row['return/best']:.0f}", mean=f"{row['return/mean']:.0f}")
            save_controller(
                path,
                cfg,
                n_actions,
                run.frames,
                run.es,
                gen + 1,
                run.best,
                np.asarray(run.es.mean),
                run.history,
            )
        run.stats = pool.stats()
    finally:
        bar.close()
        logger.close()


def plot_evolution(history: Sequence[dict], path: str, baseline: float | None = None) -> None:
    """Best, mean and worst return per generation (and a baseline's mean return, dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.fill_between(
        gens,
        [r["return/worst"] for r in history],
        [r["return/best"] for r in history],
        alpha=0.2,
        label="worst to best candidate",
    )
    ax.plot(gens, [r["return/best"] for r in history], label="best candidate")
    ax.plot(gens, [r["return/mean"] for r in history], label="population mean")
    if baseline is not None:
        ax.axhline(baseline, color="gray", ls="--", label=f"random agent ({baseline:.0f})")
    ax.set_xlabel("generation")
    ax.set_ylabel("mean episode return per candidate")
    ax.set_title("World Models: CMA-ES on the controller")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp"
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
