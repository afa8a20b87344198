"""World Models (Ha & Schmidhuber, 2018) on the pool, in one file that reads top to bottom.

The first write-up of the 2018 Retro Contest applied World Models to Sonic. Four stages, each a
subcommand of ``fastretro world-models`` and a function here, all working in one run folder:

1. ``collect``: rollouts of a random (or given) policy at pool speed, frames resized to 64x64
   RGB in the workers, written as compressed shards (``shards/shard_NNNNNN.npz``: observations,
   actions, rewards, episode ends, and the game, action set and frame size they came from). A
   second call continues where the first stopped.
2. ``vae`` (V): a convolutional VAE in the paper's shape (four 4x4 stride-2 convolutions, a
   32-d latent, a deconvolution decoder), trained on the shards; ``reconstructions.png`` shows
   frames above their reconstructions.
3. ``mdn`` (M): an LSTM (256 units) with a mixture-density head (5 Gaussians per latent
   dimension) over the next latent, and heads for the step's reward and the episode's end;
   ``dream.gif`` shows an episode's frames beside the model's own rollout of the same actions.
4. ``evolve`` (C): CMA-ES (pycma) over a linear controller, ``action = argmax(W [z, h] + b)``.
   A generation's candidates run side by side, one episode per env at a time, on an async pool
   (``batch_size=M``): the VAE encoder, the LSTM and the controllers run batched over whichever
   M envs finished their step first, so no env waits for the slowest.

``play`` runs the evolved controller (optionally recording ``.bk2`` movies), and
:func:`make_eval_agent` gives ``fastretro eval`` an agent factory.

Why one file: the stages share one configuration, one run folder and the checks between them (a
shard of another game, a VAE of another frame size, a controller of another action set); split
into files, each would import the other three for them. Top to bottom it reads as the paper
does: V, M, C.

The run folder holds ``config.json`` (the settings of the last stage run), ``shards/``,
``vae.pt``, ``mdn.pt``, ``controller.pt`` (checkpoints written atomically and tagged per model;
tensors and plain data, the CMA-ES state included, opened without running code: a run folder
from a stranger is safe to play),
``latents.npz`` (the shards encoded by the VAE, for M), one ``<stage>.json`` summary per stage
(wall-clock, frames, and the pool's frames/s for ``collect`` and ``evolve``), ``vae.csv``,
``mdn.csv``, ``evolution.csv``, TensorBoard scalars in ``tb/`` (when tensorboard is installed)
and the pictures ``reconstructions.png``, ``dream.gif`` and ``evolution.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import logging
import math
import os
import time
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.cma_state import es_from_state, es_state
from fastretro.agents.common import auto_actions, torch
from fastretro.errors import InvalidArgumentError

nn = torch.nn
F = torch.nn.functional

log = logging.getLogger("fastretro.agents.world_models")

__all__ = [
    "ConvVAE",
    "MDNRNN",
    "PRESETS",
    "WorldModelsAgent",
    "WorldModelsConfig",
    "collect",
    "evolve",
    "main",
    "make_eval_agent",
    "play",
    "run_episodes",
    "train_mdn",
    "train_vae",
]

#: The checkpoint tags (``fastretro.agents.checkpoints.save_checkpoint``'s ``agent``) of V, M, C.
VAE_TAG, MDN_TAG, CONTROLLER_TAG = "world_models_vae", "world_models_mdn", "world_models_controller"


@dataclass
class WorldModelsConfig:
    """Every setting of every stage; saved in the run folder and in every checkpoint."""

    # -- the environment ---------------------------------------------------------------------
    game: str = DEFAULT_GAME
    """Game id (``-v0``)."""
    state: str | None = None
    """Start state; None: the game's default."""
    scenario: str | None = None
    """Scenario; None: ``contest`` where the game has one, else the game's default."""
    actions: str | list = "auto"
    """Discrete action set: ``auto`` (``fastretro.agents.common.AUTO_ACTIONS``: Airstriker's 10
    combos, ``sonic7`` on Sonic), a name (``sonic7``, ``discrete``) or a list of combos."""
    frameskip: int = 4
    """Emulator frames per agent step."""
    sticky_prob: float = 0.25
    """The contest's sticky frame timing."""
    max_episode_steps: int = 4500
    """Episode length limit in agent steps (the contest's 4,500)."""
    frame_size: int = 64
    """Frames are resized to ``frame_size`` x ``frame_size`` RGB in the workers (the paper: 64)."""
    num_envs: int = 8
    """Emulators (worker processes)."""
    seed: int = 0
    """Seeds the pool's sticky frames, the random policy, torch and CMA-ES."""
    # -- collect -----------------------------------------------------------------------------
    collect_episodes: int = 64
    """Episodes the shard folder should hold; ``collect`` adds what is missing."""
    collect_policy: str = "random"
    """``random`` (uniform over the action set) or ``controller`` (the run's evolved controller:
    the paper's iterative procedure, for games a random policy does not explore)."""
    shard_steps: int = 4000
    """A shard is written once its whole episodes add up to this many steps."""
    # -- V: the VAE --------------------------------------------------------------------------
    z_size: int = 32
    """Latent size."""
    vae_width: int = 32
    """Channels of the first convolution; the next have 2x, 4x, 8x (the paper: 32)."""
    vae_epochs: int = 1
    """Passes over the frames (a second ``vae`` call with more epochs continues the run)."""
    vae_max_frames: int = 0
    """Train on at most this many frames, drawn at random; 0: every frame."""
    vae_batch_size: int = 32
    """Frames per gradient step."""
    vae_lr: float = 1e-3
    """Adam's learning rate."""
    vae_kl_tolerance: float = 0.5
    """The KL term is ``max(KL, kl_tolerance * z_size)`` per frame (the paper's free bits)."""
    vae_loss: str = "l2"
    """Reconstruction loss, summed per frame: ``l2`` (the paper's squared error) or ``bce``
    (binary cross-entropy). On small sprites over a black background, as in Airstriker, the
    squared error through the output sigmoid loses its gradient once the decoder paints
    everything black (the sigmoid's slope vanishes there), and a short training stays stuck
    on a black frame; the cross-entropy's gradient does not vanish."""
    # -- M: the MDN-RNN ----------------------------------------------------------------------
    rnn_hidden: int = 256
    """LSTM units."""
    mdn_gaussians: int = 5
    """Mixture components per latent dimension."""
    mdn_epochs: int = 20
    """Passes over the encoded episodes (a second ``mdn`` call with more continues)."""
    mdn_seq_len: int = 100
    """Steps per training sequence (episodes are cut at a random offset each epoch)."""
    mdn_batch_size: int = 32
    """Sequences per gradient step."""
    mdn_lr: float = 1e-3
    """Adam's learning rate."""
    mdn_grad_clip: float = 1.0
    """Gradient norm clip."""
    dream_steps: int = 120
    """Steps of the dream GIF."""
    dream_temperature: float = 1.0
    """The mixture's temperature while dreaming (the paper's tau)."""
    # -- C: the controller and CMA-ES --------------------------------------------------------
    generations: int = 40
    """CMA-ES generations (a second ``evolve`` call with more continues the run)."""
    popsize: int = 16
    """Candidates per generation."""
    episodes_per_candidate: int = 2
    """Episodes each candidate runs; its fitness is their mean return."""
    sigma0: float = 0.1
    """CMA-ES's initial step size (the controller starts at zero weights)."""
    cma_diagonal: bool = True
    """Diagonal covariance (sep-CMA-ES): linear time per sample in the controller's
    A x (z_size + rnn_hidden) + A parameters, where the full matrix is quadratic."""
    evolve_seconds: float = 0.0
    """Stop evolving after the generation during which this much wall-clock has passed (0: no
    limit; ``generations`` still caps the run)."""
    batch_size: int = 4
    """Async pool: each ``recv`` returns the first ``batch_size`` envs to finish a step; must
    divide ``num_envs``."""
    torch_threads: int = 1
    """torch threads while acting (collect with a controller, evolve, play); the emulators use
    the other cores. The VAE and the MDN train on every core (the emulators are idle then)."""

    def check(self) -> None:
        """Raise InvalidArgumentError on a bad value, naming it."""
        ints = (
            "frameskip",
            "max_episode_steps",
            "num_envs",
            "collect_episodes",
            "shard_steps",
            "z_size",
            "vae_width",
            "vae_batch_size",
            "rnn_hidden",
            "mdn_gaussians",
            "mdn_seq_len",
            "mdn_batch_size",
            "dream_steps",
            "popsize",
            "episodes_per_candidate",
            "batch_size",
            "torch_threads",
        )
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
        for name in ("vae_epochs", "vae_max_frames", "mdn_epochs", "generations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 0, got {value!r}")
        if self.frame_size < MIN_FRAME_SIZE:
            raise InvalidArgumentError(
                f"Expected frame_size >= {MIN_FRAME_SIZE} (four 4x4 stride-2 convolutions), "
                f"got {self.frame_size}"
            )
        if self.vae_loss not in ("l2", "bce"):
            raise InvalidArgumentError(
                f"Expected vae_loss to be 'l2' or 'bce', got {self.vae_loss!r}"
            )
        if self.collect_policy not in ("random", "controller"):
            raise InvalidArgumentError(
                f"Expected collect_policy to be 'random' or 'controller', got "
                f"{self.collect_policy!r}"
            )
        if self.num_envs % self.batch_size:
            raise InvalidArgumentError(
                f"Expected batch_size to divide num_envs ({self.num_envs}), got {self.batch_size}"
            )
        if self.popsize < 2:
            raise InvalidArgumentError(f"Expected popsize >= 2, got {self.popsize}")
        if not self.evolve_seconds >= 0:
            raise InvalidArgumentError(f"Expected evolve_seconds >= 0, got {self.evolve_seconds!r}")
        for name in ("vae_lr", "mdn_lr", "sigma0", "dream_temperature", "mdn_grad_clip"):
            if not getattr(self, name) > 0:
                raise InvalidArgumentError(f"Expected {name} > 0, got {getattr(self, name)!r}")
        if not 0 <= self.sticky_prob < 1:
            raise InvalidArgumentError(f"Expected sticky_prob in [0, 1), got {self.sticky_prob}")

    def resolved_actions(self) -> str | list:
        """The action set with ``auto`` resolved for this game."""
        return auto_actions([self.game]) if self.actions == "auto" else self.actions


#: The smallest frame the encoder's four 4x4 stride-2 convolutions leave a pixel of.
MIN_FRAME_SIZE = 46

PRESETS: dict[str, dict] = {
    # Sized for ~1.5 hours on 2 shared cores (bench/bench_world_models.py): ~35k steps of random
    # play; one VAE epoch on 16k of them in batches of 16 (the paper's VAE trains at ~20-45
    # frames/s on 2 busy cores), with the cross-entropy loss (see vae_loss); 20 MDN epochs
    # (seconds each); then 35 minutes of evolution: 16 candidates x 2 episodes on 8 envs,
    # acting on batches of 4 (at a generation's end the envs left waiting for the longest
    # episode take filler steps, at most batch_size - 1 of them at a time). Batches of 4 run
    # ~1.2x the counted frames/s of batches of 2 and as many as batches of 8, which take ~4x
    # the filler steps (fastretro world-models evolve --json, frames_per_s).
    "airstriker": dict(
        game="Airstriker-Genesis-v0",
        actions="auto",
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=4500,
        num_envs=8,
        collect_episodes=80,
        vae_epochs=1,
        vae_max_frames=16_000,
        vae_batch_size=16,
        vae_loss="bce",
        mdn_epochs=20,
        generations=200,
        evolve_seconds=2100.0,
        popsize=16,
        episodes_per_candidate=2,
        batch_size=4,
    ),
    # The Retro Contest's rules (contest scenario, 4 frames per step, sticky 0.25, 4,500-step
    # episodes) with retro-baselines' sonic7 actions, and the paper's CarRacing budget shape:
    # 10,000 random rollouts are out of reach here, so 1,000; population 64.
    "sonic": dict(
        game="SonicTheHedgehog-Genesis",
        state="GreenHillZone.Act1",
        scenario="contest",
        actions="sonic7",
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=4500,
        num_envs=16,
        collect_episodes=1000,
        vae_epochs=10,
        mdn_epochs=20,
        generations=300,
        popsize=64,
        episodes_per_candidate=4,
        batch_size=8,
    ),
}


def resolve_config(
    run_dir: str | None = None, preset: str | None = None, **overrides
) -> WorldModelsConfig:
    """The settings of a stage: defaults < the run folder's config.json < preset < overrides.

    Raises:
        InvalidArgumentError: an unknown preset or setting, or a bad value.
    """
    values: dict = {}
    saved = os.path.join(run_dir, "config.json") if run_dir else None
    if saved and os.path.isfile(saved):
        with open(saved) as f:
            values.update(json.load(f))
    if preset is not None:
        if preset not in PRESETS:
            raise InvalidArgumentError(
                f"Expected preset to be one of {sorted(PRESETS)}, got {preset!r}"
            )
        values.update(PRESETS[preset])
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(WorldModelsConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidArgumentError(f"Unknown World Models settings: {unknown}")
    cfg = WorldModelsConfig(**values)
    cfg.check()
    return cfg


def _save_config(cfg: WorldModelsConfig, run_dir: str) -> None:
    _write_json(os.path.join(run_dir, "config.json"), dataclasses.asdict(cfg))


def _write_json(path: str, obj) -> None:
    """``obj`` as JSON, written atomically (tmp + rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


# -- the environment -------------------------------------------------------------------------


def make_pool(cfg: WorldModelsConfig, num_envs: int | None = None, **extra):
    """The VecRetroEnv every stage acts on: ``frame_size`` RGB frames resized in the workers."""
    from fastretro import VecRetroEnv
    from fastretro.contest import has_contest_scenario

    scenario = cfg.scenario
    if scenario is None and has_contest_scenario(cfg.game):
        scenario = "contest"
    return VecRetroEnv(
        cfg.game,
        num_envs or cfg.num_envs,
        state=cfg.state,
        scenario=scenario,
        frameskip=cfg.frameskip,
        sticky_prob=cfg.sticky_prob,
        actions=cfg.resolved_actions(),
        resize=(cfg.frame_size, cfg.frame_size),
        max_episode_steps=cfg.max_episode_steps,
        **extra,
    )


def _n_actions(space) -> int:
    """The number of discrete actions of a Discrete space or a batched MultiDiscrete one."""
    if hasattr(space, "n"):
        return int(space.n)
    if hasattr(space, "nvec"):
        return int(np.asarray(space.nvec).flat[0])
    raise InvalidArgumentError(
        f"Expected a discrete action space (Discrete or MultiDiscrete), got {space}"
    )


# -- 1. collect: rollouts into compressed shards ---------------------------------------------


def shard_paths(run_dir: str) -> list[str]:
    """The run folder's shards, in the order they were written."""
    return sorted(glob.glob(os.path.join(run_dir, "shards", "shard_*.npz")))


def _check_shard(path: str, data, cfg: WorldModelsConfig) -> None:
    """Raise InvalidArgumentError if a shard came from another game, frame size or action set."""
    game = str(data["game"])
    if game != cfg.game:
        raise InvalidArgumentError(
            f"{path!r} holds frames of {game!r}, not of {cfg.game!r}: collect into another "
            "run folder"
        )
    h, w, c = (int(v) for v in data["frame_shape"])
    s = cfg.frame_size
    if (h, w, c) != (s, s, 3):
        raise InvalidArgumentError(
            f"{path!r} holds {h}x{w}x{c} frames, not {s}x{s}x3 (frame_size={s}): collect "
            "into another run folder"
        )
    actions = json.loads(str(data["action_set"]))
    if actions != _jsonable(cfg.resolved_actions()):
        raise InvalidArgumentError(
            f"{path!r} was collected with the action set {actions!r}, not "
            f"{_jsonable(cfg.resolved_actions())!r}: collect into another run folder"
        )


def _jsonable(actions):
    """An action set as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(actions))


def _shard_episodes(path: str, cfg: WorldModelsConfig) -> int:
    """The number of whole episodes in a shard, after checking it belongs to this run."""
    with np.load(path, allow_pickle=False) as data:
        _check_shard(path, data, cfg)
        return int(data["episodes"])


def _savez_fast(f, **arrays) -> None:
    """``np.savez_compressed`` at zlib level 1, which ``np.load`` reads as usual.

    The parent compresses on the emulators' cores: numpy's level 6 takes ~2.8x the time for
    shards ~1.7x smaller on Airstriker (``fastretro world-models collect --json``: frames/s with
    and without writing).
    """
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def _write_shard(path: str, episodes: list[dict], cfg: WorldModelsConfig, n_actions: int) -> int:
    """Whole episodes as one compressed shard, written atomically; returns its step count."""
    cat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    ends = np.zeros(len(cat["actions"]), bool)
    ends[np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        _savez_fast(
            f,
            observations=cat["observations"],
            actions=cat["actions"].astype(np.int16),
            rewards=cat["rewards"].astype(np.float32),
            terminated=cat["terminated"],
            episode_ends=ends,
            episodes=np.int64(len(episodes)),
            game=np.str_(cfg.game),
            state=np.str_(cfg.state or ""),
            action_set=np.str_(json.dumps(cfg.resolved_actions())),
            n_actions=np.int64(n_actions),
            frame_shape=np.array(cat["observations"].shape[1:], np.int64),
            frameskip=np.int64(cfg.frameskip),
        )
    os.replace(tmp, path)
    return len(ends)


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
        self.wait()
        self._last = self._pool.submit(fn, *args)

    def wait(self) -> None:
        """Block until the shard in flight is written; raise what writing it raised."""
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


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
    from tqdm import tqdm

    cfg.check()
    os.makedirs(os.path.join(run_dir, "shards"), exist_ok=True)
    paths = shard_paths(run_dir)
    have = sum(_shard_episodes(p, cfg) for p in paths)
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
        "pool": _pool_description(cfg, cfg.num_envs),
    }
    if missing <= 0:
        _write_json(os.path.join(run_dir, "collect.json"), summary)
        _save_config(cfg, run_dir)
        return summary
    # A resumed call must not replay the episodes already written: its seeds start past them.
    seed = cfg.seed * 1_000_003 + have * cfg.num_envs
    rng = np.random.default_rng(seed)
    pool = make_pool(cfg, autoreset_mode="same_step")
    start = time.perf_counter()
    try:
        n = pool.num_envs
        n_actions = _n_actions(pool.single_action_space)
        agent = None
        if policy is None and cfg.collect_policy == "controller":
            # Made after the pool: its workers fork from a parent whose torch has no threads yet.
            agent = make_eval_agent(run_dir, cfg=cfg)(
                pool.single_observation_space, pool.action_space
            )
        obs, _ = pool.reset(seed=seed)
        pool.reset_stats()
        t0 = time.perf_counter()
        running = [_new_episode() for _ in range(n)]
        pending: list[dict] = []
        pending_steps = 0
        added = steps = 0
        write_s = 0.0  # the loop's time blocked on the writer
        writer = _ShardWriter()
        index = len(paths)
        bar = tqdm(total=missing, unit="episode", disable=not progress, desc="collect")

        def book(observed, actions, rewards, terminated, truncated) -> None:
            """Add one step of every env to its episode; queue the episodes that ended."""
            nonlocal added, pending, pending_steps, index, write_s
            ends = (terminated | truncated).tolist()
            for i, a, r, t, end in zip(
                range(n), actions.tolist(), rewards.tolist(), terminated.tolist(), ends
            ):
                ep = running[i]
                ep["observations"].append(observed[i])
                ep["actions"].append(a)
                ep["rewards"].append(r)
                ep["terminated"].append(t)
                if end:
                    if added < missing:
                        done = {k: np.asarray(v) for k, v in ep.items()}
                        pending.append(done)
                        pending_steps += len(done["actions"])
                        added += 1
                        bar.update(1)
                    running[i] = _new_episode()
            if pending and (pending_steps >= cfg.shard_steps or added == missing):
                path = os.path.join(run_dir, "shards", f"shard_{index:06d}.npz")
                w0 = time.perf_counter()
                writer.submit(_write_shard, path, pending, cfg, n_actions)
                write_s += time.perf_counter() - w0
                index += 1
                pending, pending_steps = [], 0

        try:
            last = None  # the step whose bookkeeping runs while the next one steps
            while True:
                if policy is not None:
                    actions = np.asarray(policy(obs)).reshape(n)
                elif agent is not None:
                    actions = agent.act(obs)
                else:
                    actions = rng.integers(0, n_actions, n)
                observed = obs.copy()  # the pool writes the next step's frames over obs
                pool.step_async(actions)
                if last is not None:  # the emulators step meanwhile
                    book(*last)
                obs, rewards, terminated, truncated, _ = pool.step_wait()
                steps += n
                if agent is not None:
                    agent.observe(rewards, terminated, truncated)
                last = (observed, actions, rewards, terminated, truncated)
                if added >= missing:  # the step just taken belongs to no kept episode
                    break
            w0 = time.perf_counter()
            writer.wait()
            write_s += time.perf_counter() - w0
        finally:
            bar.close()
            writer.close()
        seconds = time.perf_counter() - t0
        stats = pool.stats()
    finally:
        pool.close()
    frames = steps * cfg.frameskip
    summary.update(
        episodes_added=added,
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
    _write_json(os.path.join(run_dir, "collect.json"), summary)
    _save_config(cfg, run_dir)
    return summary


def _new_episode() -> dict:
    return {"observations": [], "actions": [], "rewards": [], "terminated": []}


def _pool_description(cfg: WorldModelsConfig, num_envs: int, batch_size: int | None = None):
    """The pool's configuration as the summaries record it (to compare with fastretro bench)."""
    return {
        "game": cfg.game,
        "num_envs": num_envs,
        "batch_size": batch_size,
        "frameskip": cfg.frameskip,
        "sticky_prob": cfg.sticky_prob,
        "resize": [cfg.frame_size, cfg.frame_size],
        "grayscale": False,
        "max_pool": False,
        "frame_stack": 1,
        "actions": cfg.resolved_actions(),
        "max_episode_steps": cfg.max_episode_steps,
    }


def load_shards(run_dir: str, cfg: WorldModelsConfig, keys: Sequence[str]) -> dict:
    """``keys`` of every shard, concatenated in shard order, after checking each shard.

    Raises:
        InvalidArgumentError: no shard, or a shard of another game, frame size or action set.
    """
    paths = shard_paths(run_dir)
    if not paths:
        raise InvalidArgumentError(
            f"No shards in {os.path.join(run_dir, 'shards')!r}: run 'fastretro world-models "
            "collect' first"
        )
    parts: dict[str, list] = {k: [] for k in keys}
    for p in paths:
        with np.load(p, allow_pickle=False) as data:
            _check_shard(p, data, cfg)
            for k in keys:
                parts[k].append(data[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


# -- 2. V: the convolutional VAE -------------------------------------------------------------


class ConvVAE(nn.Module):
    """The paper's VAE: 4 conv layers (4x4, stride 2), a Gaussian latent, 4 deconv layers.

    Frames are uint8 (N, S, S, 3); the decoder draws 64x64 (5, 13, 30, 64 pixels after each
    deconvolution, as in the paper) and is resized to S x S when S is not 64.
    """

    def __init__(self, z_size: int = 32, width: int = 32, frame_size: int = 64) -> None:
        super().__init__()
        c = [width, 2 * width, 4 * width, 8 * width]
        self.z_size, self.width, self.frame_size = z_size, width, frame_size
        self.encoder = nn.Sequential(
            nn.Conv2d(3, c[0], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[0], c[1], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[1], c[2], 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c[2], c[3], 4, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            n = self.encoder(torch.zeros(1, 3, frame_size, frame_size)).shape[1]
        self.mu = nn.Linear(n, z_size)
        self.logvar = nn.Linear(n, z_size)
        self.fc = nn.Linear(z_size, 4 * c[3])  # the paper's 1024 at width 32
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * c[3], c[2], 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[2], c[1], 5, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[1], c[0], 6, stride=2),
            nn.ReLU(),
            nn.ConvTranspose2d(c[0], 3, 6, stride=2),
            nn.Sigmoid(),
        )

    @staticmethod
    def to_input(frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, S, S, 3) frames as float (N, 3, S, S) in [0, 1]."""
        # contiguous: convolutions on the permuted (channels-last) strides take a path ~3x
        # slower at the few frames an async recv returns (oneDNN, torch 2.13, 1 thread)
        return frames.permute(0, 3, 1, 2).float().mul_(1.0 / 255.0).contiguous()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (N, z_size) of float frames (N, 3, S, S)."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Float frames (N, 3, S, S) in [0, 1] of latents (N, z_size)."""
        x = self.decoder(self.fc(z)[:, :, None, None])
        if x.shape[-1] != self.frame_size:
            x = F.interpolate(x, size=(self.frame_size, self.frame_size), mode="bilinear")
        return x

    def forward(self, x: torch.Tensor):
        """Reconstruction, mean and log-variance of float frames (N, 3, S, S)."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.decode(z), mu, logvar


def vae_loss(
    x: torch.Tensor,
    recon: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    tolerance: float,
    reconstruction: str = "l2",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's losses: squared error summed per frame, KL floored per frame; batch means.

    ``tolerance`` is the KL floor in nats per frame (the paper's free bits).
    ``reconstruction``: ``l2`` (the paper's) or ``bce`` (binary cross-entropy, also summed).
    """
    if reconstruction == "bce":
        r_loss = F.binary_cross_entropy(recon, x, reduction="none").sum((1, 2, 3)).mean()
    else:
        r_loss = (recon - x).pow(2).sum((1, 2, 3)).mean()
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return r_loss, kl.clamp(min=tolerance).mean()


def load_vae(path: str, cfg: WorldModelsConfig) -> tuple[ConvVAE, dict]:
    """The VAE of a ``vae.pt``, checked against this run's frame size.

    Raises:
        InvalidArgumentError: no file, not a World Models VAE, or a VAE of another frame size.
    """
    ints = dict.fromkeys(("frame_size", "z_size", "width", "epochs"), int)
    ckpt = _load_tagged(path, VAE_TAG, "World Models VAE", required={"model": dict, **ints})
    size = int(ckpt["frame_size"])
    if size != cfg.frame_size:
        raise InvalidArgumentError(
            f"{path!r} is a VAE of {size}x{size} frames, not {cfg.frame_size}x{cfg.frame_size} "
            f"(frame_size={cfg.frame_size}): train one on this run's frames"
        )
    try:
        vae = ConvVAE(int(ckpt["z_size"]), int(ckpt["width"]), size)
    except (RuntimeError, ValueError) as exc:  # sizes no network has
        raise InvalidArgumentError(f"{path!r} holds a VAE that cannot be built: {exc}") from exc
    load_state(vae, ckpt, "model", path, "World Models VAE")
    vae.eval()
    return vae, ckpt


def train_vae(cfg: WorldModelsConfig, run_dir: str, *, progress: bool = True) -> dict:
    """Train V on the shards until ``cfg.vae_epochs`` epochs; write vae.pt and a picture.

    An existing ``vae.pt`` is continued (weights, optimizer, epochs done). Writes ``vae.csv``
    (one row per epoch), ``reconstructions.png`` (8 frames above their reconstructions) and
    ``vae.json``.
    """
    from tqdm import tqdm

    cfg.check()
    start = time.perf_counter()
    obs = load_shards(run_dir, cfg, ["observations"])["observations"]
    rng = np.random.default_rng(cfg.seed)
    if cfg.vae_max_frames and len(obs) > cfg.vae_max_frames:
        obs = obs[np.sort(rng.choice(len(obs), cfg.vae_max_frames, replace=False))]
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(_cores())
    path = os.path.join(run_dir, "vae.pt")
    vae = ConvVAE(cfg.z_size, cfg.vae_width, cfg.frame_size)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
    epochs_done, seen = 0, 0
    if os.path.exists(path):
        vae, ckpt = load_vae(path, cfg)
        opt = torch.optim.Adam(vae.parameters(), lr=cfg.vae_lr)
        load_state(opt, ckpt, "optimizer", path, "World Models VAE optimizer")
        epochs_done, seen = int(ckpt["epochs"]), int(ckpt["frames"])
    seen_before = seen
    logger = _Scalars(run_dir, "vae.csv", resume=epochs_done > 0)
    vae.train()
    bs = cfg.vae_batch_size
    batches = max(1, len(obs) // bs)
    bar = tqdm(
        total=batches * max(0, cfg.vae_epochs - epochs_done),
        unit="batch",
        disable=not progress,
        desc="vae",
    )
    train_s = 0.0
    try:
        for epoch in range(epochs_done, cfg.vae_epochs):
            t0 = time.perf_counter()
            order = rng.permutation(len(obs))
            sums = np.zeros(2)
            for b in range(batches):
                x = ConvVAE.to_input(torch.from_numpy(obs[np.sort(order[b * bs : (b + 1) * bs])]))
                recon, mu, logvar = vae(x)
                r_loss, kl_loss = vae_loss(
                    x, recon, mu, logvar, cfg.vae_kl_tolerance * cfg.z_size, cfg.vae_loss
                )
                opt.zero_grad()
                (r_loss + kl_loss).backward()
                opt.step()
                sums += (r_loss.item(), kl_loss.item())
                seen += len(x)
                bar.update(1)
                bar.set_postfix(recon=f"{r_loss.item():.1f}", kl=f"{kl_loss.item():.1f}")
            train_s += time.perf_counter() - t0
            logger.row(
                {
                    "epoch": epoch + 1,
                    "frames": seen,
                    "loss/reconstruction": sums[0] / batches,
                    "loss/kl": sums[1] / batches,
                    "seconds": round(time.perf_counter() - t0, 3),
                },
                step=seen,
            )
            _save_tagged(
                path,
                VAE_TAG,
                dataclasses.asdict(cfg),
                seen,
                model=vae.state_dict(),
                optimizer=opt.state_dict(),
                epochs=epoch + 1,
                frame_size=cfg.frame_size,
                z_size=cfg.z_size,
                width=cfg.vae_width,
            )
    finally:
        bar.close()
        logger.close()
    if not os.path.exists(path):  # vae_epochs=0 on a fresh run: an untrained VAE, saved
        _save_tagged(
            path,
            VAE_TAG,
            dataclasses.asdict(cfg),
            0,
            model=vae.state_dict(),
            optimizer=opt.state_dict(),
            epochs=0,
            frame_size=cfg.frame_size,
            z_size=cfg.z_size,
            width=cfg.vae_width,
        )
    vae.eval()
    picked = obs[np.linspace(0, len(obs) - 1, 8).astype(int)]
    with torch.no_grad():
        mu, _ = vae.encode(ConvVAE.to_input(torch.from_numpy(picked)))
        recon = _to_uint8(vae.decode(mu))
    picture = os.path.join(run_dir, "reconstructions.png")
    _save_png(np.concatenate([_row(picked), _row(recon)], axis=0), picture, scale=2)
    summary = {
        "stage": "vae",
        "frames_in_data": int(len(obs)),
        "epochs": cfg.vae_epochs,
        "frames_trained": seen,
        "train_seconds": round(train_s, 3),
        "train_frames_per_s": round((seen - seen_before) / train_s, 1) if train_s else None,
        "seconds": round(time.perf_counter() - start, 3),
        "parameters": sum(p.numel() for p in vae.parameters()),
        "picture": picture,
    }
    _write_json(os.path.join(run_dir, "vae.json"), summary)
    _save_config(cfg, run_dir)
    return summary


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float frames (N, 3, S, S) in [0, 1] as uint8 (N, S, S, 3)."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def _row(frames: np.ndarray) -> np.ndarray:
    """Frames (N, H, W, 3) side by side, (H, N * W, 3)."""
    return np.concatenate(list(frames), axis=1)


def _save_png(image: np.ndarray, path: str, scale: int = 1) -> None:
    from PIL import Image

    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    tmp = f"{path}.tmp"
    im.save(tmp, format="PNG")
    os.replace(tmp, path)


# -- 3. M: the MDN-RNN -----------------------------------------------------------------------


class MDNRNN(nn.Module):
    """An LSTM over (z, one-hot action) with a mixture-density head over the next z.

    Each latent dimension gets its own mixture of ``gaussians`` Gaussians (the paper's
    factored MDN). Two more outputs predict the step's reward and whether it ends the episode
    (a logit).
    """

    def __init__(self, z_size: int, n_actions: int, hidden: int = 256, gaussians: int = 5):
        super().__init__()
        self.z_size, self.n_actions, self.hidden, self.gaussians = (
            z_size,
            n_actions,
            hidden,
            gaussians,
        )
        self.lstm = nn.LSTM(z_size + n_actions, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3 * z_size * gaussians + 2)

    def inputs(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The LSTM's input: z (..., z_size) and one-hot actions (...) concatenated."""
        return torch.cat([z, F.one_hot(actions.long(), self.n_actions).to(z.dtype)], -1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor, state=None):
        """Mixture, reward and end predictions for sequences (B, T, z_size) and (B, T).

        Returns:
            ``((logpi, mu, logsigma), reward, end_logit, hidden_seq, state)``: the mixture's
            parameters (B, T, z_size, gaussians), reward (B, T), end logit (B, T), the LSTM's
            outputs (B, T, hidden) and its final ``(h, c)``.
        """
        out, state = self.lstm(self.inputs(z, actions), state)
        return (*self.predict(out), out, state)

    def predict(self, out: torch.Tensor):
        """The heads on LSTM outputs (..., hidden)."""
        p = self.head(out)
        k = self.z_size * self.gaussians
        shape = (*out.shape[:-1], self.z_size, self.gaussians)
        logpi = p[..., :k].reshape(shape).log_softmax(-1)
        mu = p[..., k : 2 * k].reshape(shape)
        logsigma = p[..., 2 * k : 3 * k].reshape(shape).clamp(-7.0, 5.0)
        return (logpi, mu, logsigma), p[..., 3 * k], p[..., 3 * k + 1]

    def step(self, z: torch.Tensor, actions: torch.Tensor, state):
        """One step for a batch; returns the new ``(h, c)``.

        ``z`` is (N, z_size), ``actions`` (N,), ``state`` ``(h, c)`` of (N, hidden) each.
        """
        # The LSTM's own cell on its weights: nn.LSTM's call on a one-step sequence costs
        # twice as much at the few rows an async recv returns; tests/test_world_models.py
        # pins that both give the same states.
        lstm = self.lstm
        return torch.lstm_cell(
            self.inputs(z, actions),
            state,
            lstm.weight_ih_l0,
            lstm.weight_hh_l0,
            lstm.bias_ih_l0,
            lstm.bias_hh_l0,
        )


def mdn_nll(logpi, mu, logsigma, target: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood (..., z_size) of ``target`` (..., z_size) under the mixture."""
    t = target[..., None]
    log_normal = -0.5 * ((t - mu) / logsigma.exp()).pow(2) - logsigma - 0.5 * math.log(2 * math.pi)
    return -torch.logsumexp(logpi + log_normal, -1)


def sample_mixture(logpi, mu, logsigma, temperature: float, generator=None) -> torch.Tensor:
    """One z (..., z_size) drawn from the mixture at ``temperature`` (the paper's tau)."""
    probs = (logpi / temperature).softmax(-1)
    flat = probs.reshape(-1, probs.shape[-1])
    k = torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    m = mu.gather(-1, k[..., None])[..., 0]
    s = logsigma.gather(-1, k[..., None])[..., 0].exp()
    noise = torch.randn(m.shape, generator=generator)
    return m + s * noise * math.sqrt(temperature)


def load_mdn(path: str, cfg: WorldModelsConfig, n_actions: int) -> tuple[MDNRNN, dict]:
    """The MDN-RNN of an ``mdn.pt``, checked against this run's action count and latent size.

    Raises:
        InvalidArgumentError: no file, not a World Models MDN-RNN, or one of another action
            set.
    """
    ints = dict.fromkeys(("n_actions", "z_size", "hidden", "gaussians", "epochs"), int)
    ckpt = _load_tagged(
        path,
        MDN_TAG,
        "World Models MDN-RNN",
        required={"model": dict, "reward_unit": (int, float), "action_set": (str, list), **ints},
    )
    have = int(ckpt["n_actions"])
    if have != n_actions:
        raise InvalidArgumentError(
            f"{path!r} was trained on {have} actions ({ckpt['action_set']!r}); this env has "
            f"{n_actions}: use the run's action set"
        )
    try:
        mdn = MDNRNN(int(ckpt["z_size"]), have, int(ckpt["hidden"]), int(ckpt["gaussians"]))
    except (RuntimeError, ValueError) as exc:  # sizes no network has
        raise InvalidArgumentError(
            f"{path!r} holds an MDN-RNN that cannot be built: {exc}"
        ) from exc
    load_state(mdn, ckpt, "model", path, "World Models MDN-RNN")
    mdn.eval()
    return mdn, ckpt


def encode_shards(run_dir: str, cfg: WorldModelsConfig, vae: ConvVAE, vae_ckpt: dict) -> dict:
    """Every shard's frames encoded by the VAE, with the actions, rewards and episode ends.

    Returns ``mu`` and ``logvar`` (N, z_size) float32 and the shards' ``actions``,
    ``rewards``, ``terminated`` and ``episode_ends``; cached in ``latents.npz`` until the VAE
    or the shards change.
    """
    path = os.path.join(run_dir, "latents.npz")
    stamp = json.dumps(
        {
            "vae_frames": int(vae_ckpt["frames"]),
            "vae_epochs": int(vae_ckpt["epochs"]),
            "shards": [os.path.basename(p) for p in shard_paths(run_dir)],
        }
    )
    if os.path.exists(path):
        with np.load(path, allow_pickle=False) as data:
            if str(data["stamp"]) == stamp:
                return {k: data[k] for k in data.files if k != "stamp"}
    keys = ["observations", "actions", "rewards", "terminated", "episode_ends"]
    data = load_shards(run_dir, cfg, keys)
    obs = data.pop("observations")
    mus, logvars = [], []
    with torch.no_grad():
        for s in range(0, len(obs), 256):
            mu, logvar = vae.encode(ConvVAE.to_input(torch.from_numpy(obs[s : s + 256])))
            mus.append(mu.numpy())
            logvars.append(logvar.numpy())
    data["mu"] = np.concatenate(mus)
    data["logvar"] = np.concatenate(logvars)
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, stamp=np.str_(stamp), **data)
    os.replace(tmp, path)
    return data


def _sequence_index(ends: np.ndarray, seq_len: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Training sequences: flat step indices (C, seq_len) and a mask of the steps that exist.

    Each episode is cut into sequences of ``seq_len`` steps after a first one of random length
    (1 to ``seq_len``), so the cuts move from epoch to epoch; a sequence never starts before
    its episode, and its padding (masked) comes last.
    """
    stops = np.flatnonzero(ends) + 1
    starts = np.concatenate([[0], stops[:-1]])
    firsts, last = [], []
    for s, e in zip(starts, stops):
        cuts = [s, *range(s + int(rng.integers(1, seq_len + 1)), e, seq_len)]
        firsts += cuts
        last += [*cuts[1:], e]
    base = np.array(firsts, np.int64)[:, None] + np.arange(seq_len)
    valid = base < np.array(last, np.int64)[:, None]
    return np.minimum(base, len(ends) - 1), valid


def train_mdn(cfg: WorldModelsConfig, run_dir: str, *, progress: bool = True) -> dict:
    """Train M on the VAE's latents of the shards; write mdn.pt and the dream GIF.

    The loss sums the mixture's negative log-likelihood of the next z (averaged over latent
    dimensions), the squared error of the reward (in units of the largest reward seen) and the
    cross-entropy of the episode's end (termination, not the time limit). An existing
    ``mdn.pt`` is continued. Writes ``mdn.csv``, ``dream.gif`` and ``mdn.json``.
    """
    from tqdm import tqdm

    cfg.check()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(_cores())
    vae, vae_ckpt = load_vae(os.path.join(run_dir, "vae.pt"), cfg)
    data = encode_shards(run_dir, cfg, vae, vae_ckpt)
    encode_s = time.perf_counter() - start
    with np.load(shard_paths(run_dir)[0], allow_pickle=False) as shard:
        n_actions = int(shard["n_actions"])
    path = os.path.join(run_dir, "mdn.pt")
    mdn = MDNRNN(vae.z_size, n_actions, cfg.rnn_hidden, cfg.mdn_gaussians)
    opt = torch.optim.Adam(mdn.parameters(), lr=cfg.mdn_lr)
    epochs_done, seen = 0, 0
    reward_unit = float(max(np.abs(data["rewards"]).max(), 1e-8))
    if os.path.exists(path):
        mdn, ckpt = load_mdn(path, cfg, n_actions)
        opt = torch.optim.Adam(mdn.parameters(), lr=cfg.mdn_lr)
        load_state(opt, ckpt, "optimizer", path, "World Models MDN-RNN optimizer")
        epochs_done, seen = int(ckpt["epochs"]), int(ckpt["frames"])
        reward_unit = float(ckpt["reward_unit"])
    rng = np.random.default_rng(cfg.seed)
    mu = torch.from_numpy(data["mu"])
    sigma = torch.from_numpy(data["logvar"]).mul(0.5).exp()
    actions = torch.from_numpy(data["actions"].astype(np.int64))
    rewards = torch.from_numpy(data["rewards"] / reward_unit).float()
    term = torch.from_numpy(data["terminated"].astype(np.float32))
    ends = data["episode_ends"]
    has_next = torch.from_numpy(~ends)
    # Ends are rare: weigh them as much as all the other steps together (capped).
    n_term = float(term.sum())
    pos_weight = torch.tensor(min(100.0, (len(term) - n_term) / n_term) if n_term else 1.0)
    logger = _Scalars(run_dir, "mdn.csv", resume=epochs_done > 0)
    mdn.train()
    bar = tqdm(total=max(0, cfg.mdn_epochs - epochs_done), unit="epoch", disable=not progress)
    bar.set_description("mdn")
    train_s = 0.0
    try:
        for epoch in range(epochs_done, cfg.mdn_epochs):
            t0 = time.perf_counter()
            idx, valid = _sequence_index(ends, cfg.mdn_seq_len, rng)
            idx_t, valid_t = torch.from_numpy(idx), torch.from_numpy(valid)
            z_all = mu + sigma * torch.randn(mu.shape)  # a fresh draw of every z per epoch
            order = rng.permutation(len(idx))
            sums, batches = np.zeros(4), 0
            for s in range(0, len(order), cfg.mdn_batch_size):
                rows = torch.from_numpy(order[s : s + cfg.mdn_batch_size])
                i, v = idx_t[rows], valid_t[rows]
                nxt = (i + 1).clamp(max=len(mu) - 1)
                v_next = v & has_next[i]
                (logpi, m, ls), r_hat, end_logit, _, _ = mdn(z_all[i], actions[i])
                nll = mdn_nll(logpi, m, ls, z_all[nxt]).mean(-1)
                z_loss = (nll * v_next).sum() / v_next.sum().clamp(min=1)
                r_loss = ((r_hat - rewards[i]).pow(2) * v).sum() / v.sum()
                bce = F.binary_cross_entropy_with_logits(
                    end_logit, term[i], pos_weight=pos_weight, reduction="none"
                )
                e_loss = (bce * v).sum() / v.sum()
                loss = z_loss + r_loss + e_loss
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(mdn.parameters(), cfg.mdn_grad_clip)
                opt.step()
                sums += (loss.item(), z_loss.item(), r_loss.item(), e_loss.item())
                batches += 1
                seen += int(v.sum())
            train_s += time.perf_counter() - t0
            mean = sums / max(1, batches)
            logger.row(
                {
                    "epoch": epoch + 1,
                    "steps": seen,
                    "loss/total": mean[0],
                    "loss/z_nll": mean[1],
                    "loss/reward": mean[2],
                    "loss/end": mean[3],
                    "seconds": round(time.perf_counter() - t0, 3),
                },
                step=epoch + 1,
            )
            bar.update(1)
            bar.set_postfix(z_nll=f"{mean[1]:.3f}", reward=f"{mean[2]:.3f}", end=f"{mean[3]:.3f}")
            _save_mdn(path, mdn, opt, cfg, seen, epoch + 1, reward_unit)
    finally:
        bar.close()
        logger.close()
    if not os.path.exists(path):
        _save_mdn(path, mdn, opt, cfg, 0, 0, reward_unit)
    mdn.eval()
    picture = os.path.join(run_dir, "dream.gif")
    dream_frames = write_dream(run_dir, cfg, vae, mdn, data, picture)
    summary = {
        "stage": "mdn",
        "steps_in_data": int(len(mu)),
        "episodes_in_data": int(ends.sum()),
        "epochs": cfg.mdn_epochs,
        "encode_seconds": round(encode_s, 3),
        "train_seconds": round(train_s, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "parameters": sum(p.numel() for p in mdn.parameters()),
        "reward_unit": reward_unit,
        "dream_frames": dream_frames,
        "picture": picture,
    }
    _write_json(os.path.join(run_dir, "mdn.json"), summary)
    _save_config(cfg, run_dir)
    return summary


def _save_mdn(path, mdn: MDNRNN, opt, cfg: WorldModelsConfig, seen, epochs, reward_unit):
    _save_tagged(
        path,
        MDN_TAG,
        dataclasses.asdict(cfg),
        seen,
        model=mdn.state_dict(),
        optimizer=opt.state_dict(),
        epochs=epochs,
        z_size=mdn.z_size,
        n_actions=mdn.n_actions,
        action_set=cfg.resolved_actions(),
        hidden=mdn.hidden,
        gaussians=mdn.gaussians,
        reward_unit=reward_unit,
    )


def write_dream(run_dir, cfg, vae: ConvVAE, mdn: MDNRNN, data: dict, path: str) -> int:
    """A GIF of the first episode (left) beside M's dream of it (right); returns its length.

    The dream starts from the episode's first z, takes the episode's actions, draws each next
    z from M's mixture at ``dream_temperature``, and is decoded by V.
    """
    from PIL import Image

    ends = data["episode_ends"]
    length = int(np.flatnonzero(ends)[0]) + 1
    steps = min(cfg.dream_steps, length)
    with np.load(shard_paths(run_dir)[0], allow_pickle=False) as shard:
        real = shard["observations"][:steps]
    gen = torch.Generator().manual_seed(cfg.seed)
    actions = torch.from_numpy(data["actions"][:steps].astype(np.int64))
    z = torch.from_numpy(data["mu"][:1])
    zs = [z]
    state = (torch.zeros(1, mdn.hidden), torch.zeros(1, mdn.hidden))
    with torch.no_grad():
        for t in range(steps - 1):
            state = mdn.step(z, actions[t : t + 1], state)
            (logpi, m, ls), _, _ = mdn.predict(state[0])
            z = sample_mixture(logpi, m, ls, cfg.dream_temperature, gen)
            zs.append(z)
        dream = _to_uint8(vae.decode(torch.cat(zs)))
    frames = [
        Image.fromarray(np.concatenate([r, d], axis=1)).resize(
            (4 * cfg.frame_size, 2 * cfg.frame_size), Image.NEAREST
        )
        for r, d in zip(real, dream)
    ]
    tmp = f"{path}.tmp"
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=66, loop=0)
    os.replace(tmp, path)
    return len(frames)


# -- 4. C: the controller, evolved by CMA-ES on the pool -------------------------------------


def controller_size(z_size: int, hidden: int, n_actions: int) -> int:
    """Parameters of the linear controller: W (n_actions, z_size + hidden) and b (n_actions)."""
    return n_actions * (z_size + hidden) + n_actions


def controller_actions(z: torch.Tensor, h: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``argmax(W [z, h] + b)`` per row, each row with its own controller.

    Args:
        z: latents (N, z_size).
        h: LSTM states (N, hidden).
        weights: (N, n_actions * (z_size + hidden + 1)) float, each row W then b, flattened.

    Returns:
        Actions (N,) int64.
    """
    x = torch.cat([z, h], 1)
    n, d = x.shape
    a = weights.shape[1] // (d + 1)
    w = weights[:, : a * d].reshape(n, a, d)
    b = weights[:, a * d :]
    return (torch.bmm(w, x[:, :, None])[:, :, 0] + b).argmax(1)


class _Policies:
    """V, M and one controller per env, run batched over whichever envs a ``recv`` returns."""

    def __init__(self, vae: ConvVAE, mdn: MDNRNN, num_envs: int) -> None:
        self.vae, self.mdn = vae, mdn
        self.h = torch.zeros(num_envs, mdn.hidden)
        self.c = torch.zeros(num_envs, mdn.hidden)

    def reset(self, rows) -> None:
        """New episodes in these envs: the LSTM's state back to zero."""
        self.h[rows] = 0.0
        self.c[rows] = 0.0

    def act(self, obs: np.ndarray, rows: np.ndarray, weights: torch.Tensor) -> np.ndarray:
        """Actions (len(rows),) for frames (len(rows), S, S, 3) of envs ``rows``.

        Each env acts with its row of ``weights``; then the LSTM takes each env's (z, action).
        """
        with torch.inference_mode():
            z, _ = self.vae.encode(ConvVAE.to_input(torch.from_numpy(np.array(obs))))
            r = torch.from_numpy(np.asarray(rows, np.int64))
            a = controller_actions(z, self.h[r], weights)
            self.h[r], self.c[r] = self.mdn.step(z, a, (self.h[r], self.c[r]))
        return a.numpy()


def _load_world_model(run_dir: str, cfg: WorldModelsConfig, n_actions: int):
    vae, _ = load_vae(os.path.join(run_dir, "vae.pt"), cfg)
    mdn, _ = load_mdn(os.path.join(run_dir, "mdn.pt"), cfg, n_actions)
    if mdn.z_size != vae.z_size:
        raise InvalidArgumentError(
            f"The MDN-RNN of {run_dir!r} takes {mdn.z_size}-d latents; its VAE makes "
            f"{vae.z_size}-d ones: train the MDN-RNN again on this VAE"
        )
    return vae, mdn


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

    def __init__(self, pool, policies: _Policies, seed: int) -> None:
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


def _save_controller(path, cfg, n_actions, frames, es, generation, best, mean_params, history):
    # The ES as tensors and plain data (with numpy's generator, which pycma draws from), not a
    # pickle: a controller.pt from a stranger must not be able to run code when opened.
    _save_tagged(
        path,
        CONTROLLER_TAG,
        dataclasses.asdict(cfg),
        frames,
        generation=generation,
        best_params=best["params"],
        best_fitness=best["fitness"],
        best_generation=best["generation"],
        mean_params=mean_params,
        action_set=cfg.resolved_actions(),
        n_actions=n_actions,
        z_size=cfg.z_size,
        hidden=cfg.rnn_hidden,
        es=es_state(es),
        history=history,
    )


def load_controller(path: str, cfg: WorldModelsConfig) -> dict:
    """A ``controller.pt``, read without running code, checked against this run's action set.

    ``best_params`` and ``mean_params`` come back as numpy arrays; ``es`` is the CMA-ES state
    :func:`fastretro.agents.cma_state.es_from_state` rebuilds.

    Raises:
        InvalidArgumentError: no file, not a World Models controller (or one of the old
            format, a pickle: the message names the command that converts it), or one evolved
            for another action set.
    """
    required = {
        "generation": int,
        "best_params": torch.Tensor,
        "best_fitness": (int, float),
        "best_generation": int,
        "mean_params": torch.Tensor,
        "action_set": (str, list, tuple),
        "n_actions": int,
        "es": dict,
        "history": list,
    }
    ckpt = _load_tagged(path, CONTROLLER_TAG, "World Models controller", required=required)
    for key in ("best_params", "mean_params"):
        if ckpt[key].dim() != 1 or not ckpt[key].is_floating_point():
            raise InvalidArgumentError(
                f"{path!r} is not a fastretro World Models controller checkpoint: expected "
                f"{key!r} to be a 1-d float tensor, got {tuple(ckpt[key].shape)} {ckpt[key].dtype}"
            )
        ckpt[key] = ckpt[key].numpy()
    have = _jsonable(ckpt["action_set"])
    want = _jsonable(cfg.resolved_actions())
    if have != want:
        raise InvalidArgumentError(
            f"{path!r} was evolved for the action set {have!r} ({int(ckpt['n_actions'])} "
            f"actions), not {want!r}: use the run's action set"
        )
    return ckpt


def upgrade_controller(ckpt: dict) -> dict:
    """An old-format controller's entries in the safe format's shape (for the converter).

    ``ckpt`` is the trusted, fully unpickled file: its ``es`` a ``cma.CMAEvolutionStrategy``
    and its ``numpy_random_state`` numpy's tuple; both become :func:`es_state`'s state.
    """
    if not isinstance(ckpt.get("es"), dict):
        ckpt["es"] = es_state(ckpt["es"], ckpt.pop("numpy_random_state"))
    return ckpt


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
    from tqdm import tqdm

    cfg.check()
    start = time.perf_counter()
    path = os.path.join(run_dir, "controller.pt")
    ckpt = load_controller(path, cfg) if os.path.exists(path) else None
    # The pool first: its workers fork from a parent whose torch has started no threads yet.
    pool = make_pool(cfg, batch_size=cfg.batch_size, autoreset_mode="same_step")
    try:
        n_actions = _n_actions(pool.single_action_space)
        vae, mdn = _load_world_model(run_dir, cfg, n_actions)
        size = controller_size(vae.z_size, mdn.hidden, n_actions)
        if ckpt is not None:
            if len(ckpt["best_params"]) != size:
                raise InvalidArgumentError(
                    f"{path!r} holds a controller of {len(ckpt['best_params'])} parameters; "
                    f"this run's V and M need {size}: evolve into another run folder"
                )
            es = es_from_state(ckpt["es"], path)  # numpy's generator set back too
            first, frames = int(ckpt["generation"]), int(ckpt["frames"])
            history = list(ckpt["history"])
            best = {
                "params": np.asarray(ckpt["best_params"]),
                "fitness": float(ckpt["best_fitness"]),
                "generation": int(ckpt["best_generation"]),
            }
        else:
            # pycma seeds numpy's global generator (its seed 0 would mean "from the clock").
            es = cma.CMAEvolutionStrategy(
                np.zeros(size),
                cfg.sigma0,
                {
                    "popsize": cfg.popsize,
                    "seed": cfg.seed + 1,
                    "CMA_diagonal": cfg.cma_diagonal,
                    "verbose": -9,
                },
            )
            first, frames, history = 0, 0, []
            best = {"params": np.zeros(size), "fitness": -math.inf, "generation": -1}
        torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        policies = _Policies(vae, mdn, pool.num_envs)
        evaluator = Evaluator(pool, policies, seed=cfg.seed + 7919 * (first + 1))
        logger = _Scalars(run_dir, "evolution.csv", resume=first > 0)
        bar = tqdm(
            total=max(0, cfg.generations - first), unit="gen", disable=not progress, desc="evolve"
        )
        loop_s = 0.0
        counted_frames = pool_frames = filler_total = 0
        pool.reset_stats()
        try:
            for gen in range(first, cfg.generations):
                if cfg.evolve_seconds and time.perf_counter() - start > cfg.evolve_seconds:
                    break
                t0 = time.perf_counter()
                before = int(pool.stats().frames.sum())
                xs = es.ask()
                returns, counts = evaluator.run(np.array(xs), cfg.episodes_per_candidate)
                fitness = returns.mean(1)
                es.tell(xs, (-fitness).tolist())
                seconds = time.perf_counter() - t0
                gen_frames = counts["steps"] * cfg.frameskip
                gen_pool_frames = int(pool.stats().frames.sum()) - before
                loop_s += seconds
                counted_frames += gen_frames
                pool_frames += gen_pool_frames
                filler_total += counts["filler_steps"]
                frames += gen_frames
                k = int(np.argmax(fitness))
                if fitness[k] > best["fitness"]:
                    best = {
                        "params": np.array(xs[k]),
                        "fitness": float(fitness[k]),
                        "generation": gen,
                    }
                row = {
                    "generation": gen + 1,
                    "frames": frames,
                    "return/best": float(fitness.max()),
                    "return/mean": float(fitness.mean()),
                    "return/worst": float(fitness.min()),
                    "return/best_ever": best["fitness"],
                    "cma/sigma": float(es.sigma),
                    "seconds": round(seconds, 3),
                    "time/frames_per_s": round(gen_frames / seconds, 1),
                    "time/pool_frames_per_s": round(gen_pool_frames / seconds, 1),
                    "filler_steps": counts["filler_steps"],
                }
                history.append(row)
                logger.row(row, step=gen + 1)
                bar.update(1)
                bar.set_postfix(best=f"{row['return/best']:.0f}", mean=f"{row['return/mean']:.0f}")
                _save_controller(
                    path,
                    cfg,
                    n_actions,
                    frames,
                    es,
                    gen + 1,
                    best,
                    np.asarray(es.mean),
                    history,
                )
            stats = pool.stats()
        finally:
            bar.close()
            logger.close()
    finally:
        pool.close()
    picture = os.path.join(run_dir, "evolution.png")
    if history:
        plot_evolution(history, picture)
    summary = {
        "stage": "evolve",
        "generations": cfg.generations,
        "generations_run": len(history) - first,
        "parameters": size,
        "frames": frames,
        "best_fitness": best["fitness"],
        "best_generation": best["generation"],
        "last": history[-1] if history else None,
        "seconds": round(time.perf_counter() - start, 3),
        "loop_seconds": round(loop_s, 3),
        "frames_per_s": round(counted_frames / loop_s, 1) if loop_s else None,
        "pool_frames_per_s": round(pool_frames / loop_s, 1) if loop_s else None,
        "pool_frames_per_s_stats": round(stats.frames_per_s, 1),
        "workers_cpu_use": round(stats.utilization, 3),
        "filler_steps": filler_total,
        "pool": _pool_description(cfg, cfg.num_envs, cfg.batch_size),
        "picture": picture,
    }
    _write_json(os.path.join(run_dir, "evolve.json"), summary)
    _save_config(cfg, run_dir)
    return summary


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


# -- playing: the evolved controller on an env, and the eval agent ---------------------------


class WorldModelsAgent:
    """V, M and one evolved controller acting on a batch of envs (lock-step).

    ``act(obs)`` takes uint8 frames (N, S, S, 3) and returns (N,) action indices;
    ``observe(rewards, terminated, truncated)`` resets the LSTM of the envs whose episode
    ended (with same-step autoreset their next frame is a new episode's first).
    """

    def __init__(self, vae: ConvVAE, mdn: MDNRNN, params: np.ndarray) -> None:
        self.vae, self.mdn = vae, mdn
        self.params = torch.from_numpy(np.asarray(params, np.float32))
        self._policies: _Policies | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """One action per env."""
        n = len(obs)
        if self._policies is None or self._policies.h.shape[0] != n:
            self._policies = _Policies(self.vae, self.mdn, n)
        return self._policies.act(obs, np.arange(n), self.params.expand(n, -1))

    def observe(self, rewards, terminated, truncated) -> None:
        """Forget the LSTM state of envs whose episode ended."""
        if self._policies is not None:
            done = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated))
            if done.size:
                self._policies.reset(torch.from_numpy(done))


def run_episodes(
    cfg: WorldModelsConfig,
    factory: Callable,
    episodes: int,
    *,
    num_envs: int = 1,
    seed: int = 0,
    record: str | None = None,
) -> list[float]:
    """Returns of ``episodes`` episodes on the run's env, spread evenly over ``num_envs`` envs.

    ``factory(observation_space, action_space)`` makes the agent (``act``, optional
    ``observe``), as for ``fastretro eval``; it is called once the pool is up. Each env counts
    its first ``ceil(episodes / num_envs)`` or ``floor`` episodes (taking the first ``episodes``
    to end would favour short ones); the list is in env order. ``record``: a folder for one
    ``.bk2`` movie per episode.
    """
    if episodes < 1:
        raise InvalidArgumentError(f"Expected episodes >= 1, got {episodes}")
    num_envs = min(num_envs, episodes)
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    extra = {"record": record} if record else {}
    pool = make_pool(cfg, num_envs=num_envs, autoreset_mode="same_step", **extra)
    try:
        agent = factory(pool.single_observation_space, pool.action_space)
        observe = getattr(agent, "observe", None)
        obs, _ = pool.reset(seed=seed)
        got: list[list[float]] = [[] for _ in range(num_envs)]
        ret = np.zeros(num_envs)
        while any(len(g) < q for g, q in zip(got, quota)):
            obs, rewards, terminated, truncated, _ = pool.step(agent.act(obs))
            if observe is not None:
                observe(rewards, terminated, truncated)
            ret += rewards
            for i in np.flatnonzero(terminated | truncated):
                if len(got[i]) < quota[i]:
                    got[i].append(float(ret[i]))
                ret[i] = 0.0
        return [r for g in got for r in g]
    finally:
        pool.close()


def play(
    run_dir: str,
    *,
    episodes: int = 1,
    num_envs: int = 1,
    record: str | None = None,
    seed: int = 0,
    which: str = "best",
    cfg: WorldModelsConfig | None = None,
) -> list[float]:
    """Run a run folder's evolved controller for ``episodes`` episodes; return their returns.

    ``which``: the ``best`` candidate seen or CMA-ES's ``mean``; the episodes are spread over
    ``num_envs`` envs.

    ``cfg``: the env's settings (default: the run folder's); ``record``: a folder for one
    ``.bk2`` movie per episode (``record/envNNN/GAME-STATE-NNNNNN.bk2``).
    """
    cfg = cfg or resolve_config(run_dir)
    factory = make_eval_agent(run_dir, which, cfg=cfg)
    return run_episodes(cfg, factory, episodes, num_envs=num_envs, seed=seed, record=record)


def make_eval_agent(
    run_dir: str, which: str = "best", *, cfg: WorldModelsConfig | None = None
) -> Callable:
    """An agent factory for ``fastretro eval --agent world_models:RUN_DIR``.

    ``factory(observation_space, action_space)`` returns a :class:`WorldModelsAgent` acting
    with the run's V, M and evolved controller (``which``: the ``best`` candidate seen or
    CMA-ES's ``mean``). ``factory.env_options`` holds the pool options it needs: ``resize`` to
    the VAE's frame size and the controller's ``actions``. The factory checks the env's frames
    and action count against them; V and M are loaded when it is called (after the pool has
    forked its workers).

    Raises:
        InvalidArgumentError: no controller, or one evolved for another action set than
            ``cfg``'s (default: the run folder's settings).
    """
    if which not in ("best", "mean"):
        raise InvalidArgumentError(f"Expected which to be 'best' or 'mean', got {which!r}")
    cfg = cfg or resolve_config(run_dir)
    ckpt = load_controller(os.path.join(run_dir, "controller.pt"), cfg)
    n_actions = int(ckpt["n_actions"])
    params = ckpt["best_params"] if which == "best" else ckpt["mean_params"]
    size = cfg.frame_size

    def factory(observation_space, action_space) -> WorldModelsAgent:
        shape = tuple(observation_space.shape[-3:])
        if shape != (size, size, 3):
            raise InvalidArgumentError(
                f"The VAE of {run_dir!r} takes {size}x{size}x3 frames, got observations of "
                f"shape {tuple(observation_space.shape)}: pass the env_options resize="
                f"({size}, {size}), grayscale=False"
            )
        n = _n_actions(action_space)
        if n != n_actions:
            raise InvalidArgumentError(
                f"The controller of {run_dir!r} was evolved for {n_actions} actions "
                f"({_jsonable(ckpt['action_set'])!r}), got an env with {n}: pass the "
                "env_options actions"
            )
        vae, mdn = _load_world_model(run_dir, cfg, n_actions)
        torch.set_num_threads(cfg.torch_threads)
        return WorldModelsAgent(vae, mdn, params)

    factory.env_options = {"resize": (size, size), "actions": cfg.resolved_actions()}
    return factory


# -- logs ------------------------------------------------------------------------------------


class _Scalars:
    """One CSV row per epoch or generation, and the same figures as TensorBoard scalars."""

    def __init__(self, run_dir: str, name: str, resume: bool) -> None:
        path = os.path.join(run_dir, name)
        self._fresh = not (resume and os.path.exists(path))
        self._file = open(path, "w" if self._fresh else "a", newline="")
        self._csv = None
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(run_dir, "tb", name.split(".")[0]))
        except ImportError:
            log.warning("tensorboard is not installed: %s only, no TensorBoard scalars", name)

    def row(self, row: dict, step: int) -> None:
        if self._csv is None:
            self._csv = csv.DictWriter(self._file, fieldnames=list(row))
            if self._fresh:
                self._csv.writeheader()
        self._csv.writerow(row)
        self._file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if "/" in k:
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self.tb is not None:
            self.tb.close()


def _cores() -> int:
    from fastretro.runtime.stats import available_cores

    return available_cores()


# -- command line ----------------------------------------------------------------------------

_STAGES = ("collect", "vae", "mdn", "evolve", "play")


def _parse_actions(text: str):
    """``--actions``: a name (``auto``, ``sonic7``) or a JSON list of combos."""
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(
                f"Expected a JSON list of combos, got {text!r}"
            ) from exc
    return text


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", default="runs/world_models", help="the run folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="settings per game")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    group = parser.add_argument_group("settings (default: the run folder's config.json)")
    for f in dataclasses.fields(WorldModelsConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "actions":
            group.add_argument(flag, type=_parse_actions, default=None)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            group.add_argument(flag, type=kind, default=None)


def main(argv: list[str] | None = None) -> int:
    """``fastretro world-models collect|vae|mdn|evolve|play``."""
    parser = argparse.ArgumentParser(
        prog="fastretro world-models",
        description="World Models (Ha & Schmidhuber 2018) on the pool: collect random rollouts, "
        "train the VAE (V) and the MDN-RNN (M), evolve the controller (C) with CMA-ES, play it. "
        "Every stage works in --run-dir.",
    )
    sub = parser.add_subparsers(dest="stage", required=True)
    helps = {
        "collect": "random rollouts into shards (continues an interrupted collection)",
        "vae": "train the VAE on the shards; writes reconstructions.png",
        "mdn": "train the MDN-RNN on the VAE's latents; writes dream.gif",
        "evolve": "evolve the controller with CMA-ES on an async pool; writes evolution.png",
        "play": "run the evolved controller, optionally recording .bk2 movies",
    }
    subs = {}
    for stage in _STAGES:
        p = sub.add_parser(stage, help=helps[stage], description=helps[stage])
        _add_settings(p)
        subs[stage] = p
    subs["play"].add_argument("--episodes", type=int, default=1)
    subs["play"].add_argument("--envs", type=int, default=1, help="envs to spread them over")
    subs["play"].add_argument("--record", metavar="DIR", help="write one .bk2 per episode here")
    subs["play"].add_argument("--which", choices=("best", "mean"), default="best")
    subs["play"].add_argument("--play-seed", type=int, default=0)
    args = parser.parse_args(argv)
    p = subs[args.stage]
    overrides = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(WorldModelsConfig)
        if getattr(args, f.name) is not None
    }
    try:
        cfg = resolve_config(args.run_dir, args.preset, **overrides)
        progress = not args.quiet
        if args.stage == "collect":
            summary = collect(cfg, args.run_dir, progress=progress)
        elif args.stage == "vae":
            summary = train_vae(cfg, args.run_dir, progress=progress)
        elif args.stage == "mdn":
            summary = train_mdn(cfg, args.run_dir, progress=progress)
        elif args.stage == "evolve":
            summary = evolve(cfg, args.run_dir, progress=progress)
        else:
            returns = play(
                args.run_dir,
                episodes=args.episodes,
                num_envs=args.envs,
                record=args.record,
                seed=args.play_seed,
                which=args.which,
                cfg=cfg,
            )
            summary = {"stage": "play", "returns": returns, "mean_return": float(np.mean(returns))}
    except InvalidArgumentError as exc:
        p.error(str(exc))
    if args.json:
        print(json.dumps(summary))
    else:
        print(describe_summary(summary))
    return 0


def describe_summary(s: dict) -> str:
    """One line per stage summary, for humans."""
    stage = s["stage"]
    if stage == "collect":
        if not s["episodes_added"]:
            return f"collect: the shards already hold {s['episodes_before']} episodes"
        return (
            f"collect: {s['episodes_added']} episodes, {s['frames']:,} frames in "
            f"{s['seconds']:.0f} s (pool {s['pool_frames_per_s']:,.0f} frames/s)"
        )
    if stage == "vae":
        return (
            f"vae: {s['frames_trained']:,} frames trained ({s['frames_in_data']:,} in the data) "
            f"in {s['seconds']:.0f} s; {s['picture']}"
        )
    if stage == "mdn":
        return (
            f"mdn: {s['epochs']} epochs over {s['steps_in_data']:,} steps in {s['seconds']:.0f} s; "
            f"{s['picture']}"
        )
    if stage == "evolve":
        last = s["last"] or {}
        return (
            f"evolve: {s['generations_run']} generations in {s['seconds']:.0f} s (pool "
            f"{s['pool_frames_per_s'] or 0:,.0f} frames/s), best {last.get('return/best')}, "
            f"mean {last.get('return/mean')}, best ever {s['best_fitness']}; {s['picture']}"
        )
    lines = [f"episode {i}: return {r:g}" for i, r in enumerate(s["returns"])]
    lines.append(f"mean return {s['mean_return']:g} over {len(s['returns'])} episode(s)")
    return "\n".join(lines)
