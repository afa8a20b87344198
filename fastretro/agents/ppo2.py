"""PPO2 on the pool: the Retro Contest's learning baseline, in one file that reads top to bottom.

CleanRL-style PyTorch PPO (GAE, clipped surrogate and optional clipped value loss, advantage
normalisation, learning-rate annealing, gradient clipping) on a ``VecRetroEnv`` that does the
preprocessing in its workers (84x84 gray, max-pool, stack 4, channels first), with the Nature
or IMPALA CNN. Presets:

- ``retro-baselines``: the values of retro-baselines' agents/ppo2_agent.py (4096-step rollouts
  per env, 8 minibatches, 3 epochs, lr 2e-4 constant, clip 0.1, entropy 0.01, gamma 0.99,
  lambda 0.95, rewards x 0.01);
- ``joint``: many levels side by side (the contest's 47 training levels spread over the envs
  when their ROMs are present): shorter rollouts per env since there are many envs, annealed
  lr. These are this project's choices, not the paper's published table.

Transfer learning: train jointly, then ``--init-from CKPT`` fine-tunes the weights on another
level with its own learning rate (a new optimizer, step count from zero). ``--resume CKPT``
continues a run: weights, optimizer, config and step count. Checkpoints hold tensors and plain
data only and are opened without running code (:mod:`fastretro.agents.checkpoints`).

A run directory holds ``monitor.csv`` (SB3's Monitor format: one row per episode),
``progress.csv`` (one row per update), TensorBoard scalars (when ``tensorboard`` is installed)
and ``checkpoints/``. ``fastretro plot RUN_DIR`` draws the learning curve.

Overlap (``--overlap``): the envs are split into two lock-step pools of half the size; while
the network computes the actions of one half, the emulators of the other half step. Two pools
rather than one async pool keep every env at the same time index of the rollout, which GAE's
(steps, envs) layout wants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import (
    AUTO_ACTIONS,
    NatureCNN,
    RunLog,
    image_pool,
    init_layer,
    torch,
)
from fastretro.errors import InvalidArgumentError

nn = torch.nn

__all__ = ["AUTO_ACTIONS", "ActorCritic", "PPO2Config", "NatureCNN", "RunLog", "play", "train"]


@dataclass
class PPO2Config:
    """Everything a run needs; saved in every checkpoint."""

    game: str = DEFAULT_GAME
    """Game id (``-v0``), used when ``levels`` is empty."""
    state: str | None = None
    """Start state of ``game``; None: the game's default."""
    levels: list[tuple[str, str]] = field(default_factory=list)
    """(game, state) pairs spread over the envs for joint training; overrides game/state."""
    scenario: str | None = None
    """Scenario name; None: ``contest`` where the game has one, else the game's default."""
    num_envs: int = 8
    """Emulators (worker processes)."""
    total_frames: int = 1_000_000
    """Emulator frames to train for (agent steps x frameskip, all envs)."""
    actions: str | list = "auto"
    """Action set: ``auto`` is ``sonic7`` on Sonic and ``discrete`` otherwise."""
    frameskip: int = 4
    """Emulator frames per agent step."""
    sticky_prob: float = 0.25
    """The contest's sticky frame timing."""
    max_episode_steps: int = 4500
    """Episode length limit in agent steps (the contest's 4500)."""
    allow_backtracking: bool = False
    """Reward only new maximum x (retro-baselines' AllowBacktracking; Sonic scenarios)."""
    network: str = "nature"
    """``nature`` (Mnih et al. 2015) or ``impala`` (Espeholt et al. 2018)."""
    n_steps: int = 128
    """Rollout length per env between updates."""
    n_minibatches: int = 4
    """Minibatches per epoch; the minibatch is ``n_steps * num_envs / n_minibatches``."""
    n_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 2.5e-4
    """Adam's learning rate (at the start, when annealed)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over the run."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE's lambda."""
    clip_range: float = 0.1
    """PPO's ratio clip."""
    clip_value_loss: bool = True
    """Clip the value update too (baselines' ppo2 does)."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    reward_scale: float = 0.01
    """Rewards are multiplied by this for learning (logged rewards are the game's)."""
    clip_reward: float | None = None
    """Clip the (scaled) rewards to ``[-c, c]`` for learning (the Atari protocol's sign of the
    reward: 1 with ``reward_scale`` 1); logged rewards are the game's."""
    overlap: bool = False
    """Two half pools: the network acts for one half while the other half steps."""
    seed: int = 0
    """Seeds torch, the action sampling and the pool's sticky frames."""
    device: str = "auto"
    """``cpu``, ``cuda`` or ``auto`` (cuda when present)."""
    torch_threads: int = 0
    """torch threads while acting; 0: every core in lock-step (the emulators wait meanwhile),
    one less with ``overlap``. Learning (the emulators are idle then) uses every core."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many frames (0: only at the end)."""

    def check(self) -> None:
        """Raise InvalidArgumentError on a bad value, naming it."""
        if self.network not in NETWORKS:
            raise InvalidArgumentError(
                f"Expected network to be one of {sorted(NETWORKS)}, got {self.network!r}"
            )
        for name in ("num_envs", "total_frames", "n_steps", "n_minibatches", "n_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
        if self.overlap and self.num_envs % 2:
            raise InvalidArgumentError(
                f"overlap splits the envs in two halves: num_envs must be even, got {self.num_envs}"
            )
        if (self.n_steps * self.num_envs) % self.n_minibatches:
            raise InvalidArgumentError(
                f"n_steps * num_envs = {self.n_steps * self.num_envs} does not split into "
                f"{self.n_minibatches} minibatches"
            )
        if not 0 < self.learning_rate:
            raise InvalidArgumentError(f"Expected learning_rate > 0, got {self.learning_rate!r}")


PRESETS: dict[str, dict] = {
    # retro-baselines agents/ppo2_agent.py: ppo2.learn(nsteps=4096, nminibatches=8, lam=0.95,
    # gamma=0.99, noptepochs=3, ent_coef=0.01, lr=2e-4, cliprange=0.1) on RewardScaler(0.01).
    "retro-baselines": dict(
        n_steps=4096,
        n_minibatches=8,
        n_epochs=3,
        learning_rate=2e-4,
        anneal_lr=False,
        clip_range=0.1,
        ent_coef=0.01,
        gamma=0.99,
        gae_lambda=0.95,
        reward_scale=0.01,
        allow_backtracking=True,
    ),
    # Many levels, many envs: short rollouts per env, annealed lr (this project's choice).
    "joint": dict(
        n_steps=256,
        n_minibatches=8,
        n_epochs=4,
        learning_rate=2e-4,
        anneal_lr=True,
        clip_range=0.1,
        ent_coef=0.01,
        reward_scale=0.01,
        allow_backtracking=True,
    ),
    # Short rollouts for a few envs on one level; what bench/bench_ppo2.py learn runs on
    # Airstriker (2.17x the random agent's reward in 1M frames there).
    "fast": dict(n_steps=128, n_minibatches=4, n_epochs=4, learning_rate=2.5e-4, anneal_lr=False),
    # Atari 2600 under Machado et al. (2018)'s protocol (EnvConfig.atari: sticky 0.25, 4 frames,
    # the full action set, 27,000-step episodes), with CleanRL's ppo_atari hyper-parameters and
    # rewards clipped to their sign.
    "atari": dict(
        num_envs=8,
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=27_000,
        actions="ale_full",
        n_steps=128,
        n_minibatches=4,
        n_epochs=4,
        learning_rate=2.5e-4,
        anneal_lr=True,
        clip_range=0.1,
        ent_coef=0.01,
        reward_scale=1.0,
        clip_reward=1.0,
    ),
}


# -- the networks ----------------------------------------------------------------------------


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(nn.Module):
    """Espeholt et al. (2018): 3 stacks of conv, max-pool and 2 residual blocks; 256 units."""

    def __init__(self, in_channels: int, hw: tuple[int, int], depths=(16, 32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for d in depths:
            layers += [
                nn.Conv2d(c, d, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _Residual(d),
                _Residual(d),
            ]
            c = d
        self.body = nn.Sequential(*layers, nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            n = self.body(torch.zeros(1, in_channels, *hw)).shape[1]
        self.fc = nn.Sequential(init_layer(nn.Linear(n, 256)), nn.ReLU())
        self.out_features = 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features (N, out_features) of float images (N, C, H, W)."""
        return self.fc(self.body(x))


NETWORKS = {"nature": NatureCNN, "impala": ImpalaCNN}


class ActorCritic(nn.Module):
    """A CNN body with a policy head (logits over the discrete actions) and a value head."""

    def __init__(self, network: str, obs_shape: Sequence[int], n_actions: int) -> None:
        super().__init__()
        c, h, w = obs_shape
        self.body = NETWORKS[network](c, (h, w))
        self.policy = init_layer(nn.Linear(self.body.out_features, n_actions), std=0.01)
        self.value = init_layer(nn.Linear(self.body.out_features, 1), std=1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (N, A) and values (N,) of uint8 observations (N, C, H, W)."""
        # One pass from uint8 to scaled float (``obs.float() * c`` makes two, same values).
        hidden = self.body(torch.mul(obs, 1.0 / 255.0))
        return self.policy(hidden), self.value(hidden).squeeze(-1)


# -- GAE -------------------------------------------------------------------------------------


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    last_done: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over a (steps, envs) rollout.

    ``dones[t]`` is 1 where the observation at step t began a new episode (so no value flows
    back across it), as in baselines' ppo2 and CleanRL; ``last_value``/``last_done`` belong to
    the observation after the last step. Returns ``(advantages, returns)``.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    gae = torch.zeros_like(last_value)
    for t in reversed(range(steps)):
        if t == steps - 1:
            not_done, next_value = 1.0 - last_done, last_value
        else:
            not_done, next_value = 1.0 - dones[t + 1], values[t + 1]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        gae = delta + gamma * lam * not_done * gae
        advantages[t] = gae
    return advantages, advantages + values


@dataclass
class Rollout:
    """One rollout's storage, (steps, envs, ...), and the observation that follows it."""

    obs: torch.Tensor  # uint8: a quarter of float32's size
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor  # 1 where the observation at that step began a new episode
    values: torch.Tensor
    next_obs: np.ndarray
    next_done: torch.Tensor

    @classmethod
    def zeros(cls, steps: int, n: int, obs_shape: Sequence[int]) -> Rollout:
        """Preallocated storage for ``steps`` steps of ``n`` envs."""
        return cls(
            obs=torch.zeros((steps, n, *obs_shape), dtype=torch.uint8),
            actions=torch.zeros((steps, n), dtype=torch.long),
            logprobs=torch.zeros((steps, n)),
            rewards=torch.zeros((steps, n)),
            dones=torch.zeros((steps, n)),
            values=torch.zeros((steps, n)),
            next_obs=np.zeros((n, *obs_shape), np.uint8),
            next_done=torch.zeros(n),
        )


# -- the environment -------------------------------------------------------------------------


def make_pool(cfg: PPO2Config, env_ids: Sequence[int] | None = None, **extra):
    """The VecRetroEnv the agent trains on: in-worker preprocessing, same-step autoreset."""
    from fastretro.contest import spread

    ids = list(range(cfg.num_envs)) if env_ids is None else list(env_ids)
    if cfg.levels:
        all_games, all_states = spread(cfg.levels, cfg.num_envs)
        games, states = [all_games[i] for i in ids], [all_states[i] for i in ids]
    else:
        games, states = [cfg.game] * len(ids), [cfg.state] * len(ids)
    return image_pool(
        games,
        states,
        cfg.scenario,
        actions=cfg.actions,
        frameskip=cfg.frameskip,
        sticky_prob=cfg.sticky_prob,
        max_episode_steps=cfg.max_episode_steps,
        allow_backtracking=cfg.allow_backtracking,
        **extra,
    )


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: str, model, optimizer, cfg: PPO2Config, frames: int, **more) -> None:
    """Weights, optimizer, config and step count, written atomically (tmp + rename).

    Tensors and plain data only (``more`` too): the file opens without running code.
    """
    _save_tagged(
        path,
        "ppo2",
        dataclasses.asdict(cfg),
        frames,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        **more,
    )


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, read without running any code.

    Raises:
        InvalidArgumentError: no file; not a checkpoint; one of the old format (a pickle: the
            message names the command that converts it); another agent's; or one whose
            weights or config are not a PPO2 policy's.
    """
    ckpt = _load_tagged(path, "ppo2", "PPO2", required={"model": dict})
    head = ckpt["model"].get("policy.weight")
    if not isinstance(head, torch.Tensor) or head.dim() != 2:
        raise InvalidArgumentError(
            f"{path!r} is not a fastretro PPO2 checkpoint: its 'model' has no policy layer "
            "('policy.weight')"
        )
    try:
        config_from_checkpoint(ckpt)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{path!r} is not a fastretro PPO2 checkpoint: its 'config' is not a PPO2Config's "
            f"({exc})"
        ) from exc
    return ckpt


def config_from_checkpoint(ckpt: dict) -> PPO2Config:
    """The PPO2Config saved in a checkpoint (levels back to tuples)."""
    values = dict(ckpt["config"])
    values["levels"] = [tuple(lv) for lv in values.get("levels", [])]
    known = {f.name for f in dataclasses.fields(PPO2Config)}
    return PPO2Config(**{k: v for k, v in values.items() if k in known})


# -- training --------------------------------------------------------------------------------


def train(
    cfg: PPO2Config,
    run_dir: str,
    *,
    resume: str | None = None,
    init_from: str | None = None,
    watch=None,
    progress: bool = True,
    max_seconds: float | None = None,
    on_loop=None,
) -> dict:
    """Train PPO2 as ``cfg`` says; write logs and checkpoints under ``run_dir``.

    Args:
        cfg: the run's configuration (ignored, but for ``total_frames``, when ``resume``).
        run_dir: where monitor.csv, progress.csv, tb/ and checkpoints/ go.
        resume: a checkpoint of this run to continue (weights, optimizer, config, step count).
        init_from: a checkpoint whose weights start this run (fine-tuning; new optimizer).
        watch: a :class:`fastretro.runtime.stats.Stopwatch` for ``inference``/``learning`` time.
        progress: show a progress bar.
        max_seconds: stop after this much wall-clock (the profiler's budget).
        on_loop: ``on_loop("start" | "end", pools)`` is called just before the first rollout and
            just after the last update (the profiler reads the pools' stats in that window).

    Returns:
        A summary: frames, episodes, mean reward of the last 100 episodes, seconds, frames/s,
        the rollout's share of the time, and the final checkpoint's path.
    """
    from tqdm import tqdm

    from fastretro.runtime.stats import Stopwatch

    start_frames = 0
    ckpt = None
    if resume and init_from:
        raise InvalidArgumentError("Pass --resume or --init-from, not both")
    if resume:
        ckpt = load_checkpoint(resume)
        total = cfg.total_frames
        cfg = config_from_checkpoint(ckpt)
        cfg.total_frames = total
        start_frames = int(ckpt["frames"])
    cfg.check()
    # Before the pools start: a bad checkpoint is refused without starting an emulator.
    source = load_checkpoint(init_from) if init_from else None
    watch = watch or Stopwatch()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    from fastretro.runtime.stats import available_cores

    # Lock-step acting and learning both run while the emulators wait, so torch gets every
    # core; overlapped acting shares them with the other half's emulators, so it gets one less.
    cores = available_cores()
    acting = max(1, cores - 1) if cfg.overlap else cores
    threads = (cfg.torch_threads or acting, cores)
    torch.set_num_threads(threads[0])
    torch.manual_seed(cfg.seed)
    rng = torch.Generator().manual_seed(cfg.seed + 1)

    n_pools = 2 if cfg.overlap else 1
    per = cfg.num_envs // n_pools
    pools = [make_pool(cfg, range(h * per, (h + 1) * per)) for h in range(n_pools)]
    try:
        obs_shape = pools[0].single_observation_space.shape
        n_actions = int(pools[0].single_action_space.n)
        model = ActorCritic(cfg.network, obs_shape, n_actions).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, eps=1e-5)
        if ckpt is not None:
            _check_compatible(ckpt, obs_shape, n_actions, resume)
            load_state(model, ckpt, "model", resume, "PPO2 network")
            load_state(optimizer, ckpt, "optimizer", resume, "PPO2 optimizer")
        if source is not None:
            _check_compatible(source, obs_shape, n_actions, init_from)
            load_state(model, source, "model", init_from, "PPO2 network")
        on_loop = on_loop or (lambda phase, pools: None)

        n, steps = cfg.num_envs, cfg.n_steps
        ro = Rollout.zeros(steps, n, obs_shape)
        # Short local names for the loop below; they alias the rollout's storage.
        obs_np = ro.obs.numpy()
        actions_buf, logprobs_buf, values_buf = ro.actions, ro.logprobs, ro.values
        rewards_buf, dones_buf = ro.rewards, ro.dones
        next_obs, next_done = ro.next_obs, ro.next_done
        for h, pool in enumerate(pools):
            obs, _ = pool.reset(seed=cfg.seed + h * per + start_frames)
            next_obs[h * per : (h + 1) * per] = obs
        ep_reward = np.zeros(n)
        ep_length = np.zeros(n, np.int64)
        recent: list[float] = []
        episodes = 0
        frames = start_frames
        frames_per_update = steps * n * cfg.frameskip
        updates = max(1, -(-(cfg.total_frames - start_frames) // frames_per_update))
        runlog = RunLog(run_dir, resume=resume is not None)
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        last_ckpt = start_frames
        start = time.perf_counter()
        rollout_s = 0.0
        bar = tqdm(
            total=updates * frames_per_update,
            unit="frame",
            unit_scale=True,
            disable=not progress,
            desc="ppo2",
        )
        path = None

        def act(rows: slice, obs: np.ndarray, t: int):
            with watch("inference"):
                with torch.inference_mode():
                    logits, value = model(torch.from_numpy(obs).to(device))
                    # Categorical's sample and log_prob by hand: the distribution object's argument
                    # checks cost more than the sampling at a batch of 8.
                    logp = logits.log_softmax(-1)
                    action = torch.multinomial(logp.exp(), 1)
                    actions_buf[t, rows] = action[:, 0].cpu()
                    logprobs_buf[t, rows] = logp.gather(1, action)[:, 0].cpu()
                    values_buf[t, rows] = value.cpu()
            return actions_buf[t, rows].numpy()

        def record(rows: slice, t: int, result) -> None:
            nonlocal episodes
            obs, rewards, terminated, truncated, _ = result
            done = terminated | truncated
            learned = rewards * cfg.reward_scale
            if cfg.clip_reward is not None:
                learned = np.clip(learned, -cfg.clip_reward, cfg.clip_reward)
            rewards_buf[t, rows] = torch.from_numpy(learned).float()
            ep_reward[rows] += rewards
            ep_length[rows] += 1
            for j in np.flatnonzero(done):
                i = rows.start + j
                runlog.episode(float(ep_reward[i]), int(ep_length[i]), frames)
                recent.append(float(ep_reward[i]))
                episodes += 1
                ep_reward[i], ep_length[i] = 0.0, 0
            next_obs[rows] = obs
            next_done[rows] = torch.from_numpy(done.astype(np.float32))

        halves = [slice(h * per, (h + 1) * per) for h in range(n_pools)]  # each pool's rows
        on_loop("start", pools)
        try:
            for _ in range(updates):
                if max_seconds is not None and time.perf_counter() - start > max_seconds:
                    break
                if cfg.anneal_lr:
                    done_frac = (frames - start_frames) / max(1, cfg.total_frames - start_frames)
                    optimizer.param_groups[0]["lr"] = cfg.learning_rate * max(0.0, 1.0 - done_frac)
                t0 = time.perf_counter()
                if len(pools) == 1:
                    for t in range(steps):
                        obs_np[t] = next_obs
                        dones_buf[t] = next_done
                        a = act(halves[0], next_obs, t)
                        record(halves[0], t, pools[0].step(a))
                else:
                    # Double buffering: act for one half while the other half's emulators run.
                    ha, hb = halves
                    obs_np[0, ha] = next_obs[ha]
                    dones_buf[0, ha] = next_done[ha]
                    pools[0].step_async(act(ha, next_obs[ha], 0))
                    for t in range(steps):
                        obs_np[t, hb] = next_obs[hb]
                        dones_buf[t, hb] = next_done[hb]
                        pools[1].step_async(act(hb, next_obs[hb], t))
                        record(ha, t, pools[0].step_wait())
                        if t + 1 < steps:
                            obs_np[t + 1, ha] = next_obs[ha]
                            dones_buf[t + 1, ha] = next_done[ha]
                            pools[0].step_async(act(ha, next_obs[ha], t + 1))
                        record(hb, t, pools[1].step_wait())
                frames += frames_per_update
                t1 = time.perf_counter()
                rollout_s += t1 - t0

                with watch("learning"):
                    torch.set_num_threads(threads[1])
                    stats = _update(cfg, model, optimizer, device, rng, ro)
                    torch.set_num_threads(threads[0])
                elapsed = time.perf_counter() - start
                row = {
                    "frames": frames,
                    "episodes": episodes,
                    "episode/reward_mean100": float(np.mean(recent[-100:])) if recent else 0.0,
                    "time/frames_per_s": (frames - start_frames) / elapsed,
                    "time/rollout_share": rollout_s / elapsed,
                    "time/update_rollout_s": t1 - t0,
                    "time/update_learn_s": time.perf_counter() - t1,
                    "lr": optimizer.param_groups[0]["lr"],
                    **stats,
                }
                runlog.update(row)
                bar.update(frames_per_update)
                bar.set_postfix(reward=f"{row['episode/reward_mean100']:.1f}", eps=episodes)
                if cfg.checkpoint_every and frames - last_ckpt >= cfg.checkpoint_every:
                    save_checkpoint(
                        os.path.join(ckpt_dir, f"ckpt_{frames}.pt"), model, optimizer, cfg, frames
                    )
                    last_ckpt = frames
            on_loop("end", pools)
        finally:
            bar.close()
            path = os.path.join(ckpt_dir, "last.pt")
            save_checkpoint(path, model, optimizer, cfg, frames)
            runlog.close()
        elapsed = time.perf_counter() - start
        return {
            "frames": frames,
            "episodes": episodes,
            "reward_mean100": float(np.mean(recent[-100:])) if recent else None,
            "seconds": round(elapsed, 3),
            "frames_per_s": round((frames - start_frames) / elapsed, 1),
            "rollout_s": round(rollout_s, 3),
            "checkpoint": path,
        }
    finally:
        for p in pools:
            p.close()


def _check_compatible(ckpt: dict, obs_shape, n_actions: int, path: str) -> None:
    src = config_from_checkpoint(ckpt)
    model = ckpt["model"]
    have = model["policy.weight"].shape[0]
    if have != n_actions:
        raise InvalidArgumentError(
            f"{path!r} was trained with {have} actions; this env has {n_actions}: use the same "
            "action set (actions=...)"
        )
    if src.network not in NETWORKS:
        raise InvalidArgumentError(f"{path!r} has an unknown network {src.network!r}")


def _update(cfg, model, optimizer, device, rng, ro: Rollout) -> dict:
    """PPO's epochs of minibatch updates on one rollout; returns the losses and diagnostics."""
    with torch.no_grad():
        _, last_value = model(torch.from_numpy(ro.next_obs).to(device))
    advantages, returns = compute_gae(
        ro.rewards, ro.values, ro.dones, last_value.cpu(), ro.next_done, cfg.gamma, cfg.gae_lambda
    )
    b_obs = ro.obs.reshape(-1, *ro.obs.shape[2:])
    b_actions = ro.actions.reshape(-1)
    b_logprobs = ro.logprobs.reshape(-1)
    b_adv = advantages.reshape(-1)
    b_returns = returns.reshape(-1)
    b_values = ro.values.reshape(-1)
    batch = b_obs.shape[0]
    mb = batch // cfg.n_minibatches
    clip = cfg.clip_range
    clip_fracs, approx_kls = [], []
    for _ in range(cfg.n_epochs):
        order = torch.randperm(batch, generator=rng)
        for s in range(0, batch, mb):
            idx = order[s : s + mb]
            logits, value = model(b_obs[idx].to(device))
            dist = torch.distributions.Categorical(logits=logits)
            logprob = dist.log_prob(b_actions[idx].to(device)).cpu()
            entropy = dist.entropy().mean()
            log_ratio = logprob - b_logprobs[idx]
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kls.append(float(((ratio - 1) - log_ratio).mean()))
                clip_fracs.append(float(((ratio - 1.0).abs() > clip).float().mean()))
            adv = b_adv[idx]
            if cfg.norm_adv:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)).mean()
            value = value.cpu()
            if cfg.clip_value_loss:
                clipped = b_values[idx] + (value - b_values[idx]).clamp(-clip, clip)
                v_loss = (
                    0.5
                    * torch.max(
                        (value - b_returns[idx]) ** 2, (clipped - b_returns[idx]) ** 2
                    ).mean()
                )
            else:
                v_loss = 0.5 * ((value - b_returns[idx]) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy.cpu() + cfg.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
    var_y = float(b_returns.var())
    explained = float("nan") if var_y == 0 else 1 - float((b_returns - b_values).var()) / var_y
    return {
        "loss/policy": pg_loss.item(),
        "loss/value": v_loss.item(),
        "loss/entropy": entropy.item(),
        "loss/approx_kl": float(np.mean(approx_kls)),
        "loss/clip_fraction": float(np.mean(clip_fracs)),
        "loss/explained_variance": explained,
    }


# -- playing a trained policy ----------------------------------------------------------------


def play(
    checkpoint: str,
    game: str | None = None,
    state: str | None = None,
    episodes: int = 1,
    record: str | None = None,
    greedy: bool = False,
    seed: int = 0,
) -> list[float]:
    """Run a trained policy for ``episodes`` episodes on one env; return their rewards.

    ``record``: a folder for one .bk2 movie per episode (``fastretro render`` turns them
    into video).

    Raises:
        InvalidArgumentError: the checkpoint is refused (:func:`load_checkpoint`; before any
            emulator starts) or does not fit the env.
    """
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt)
    if game is not None:
        cfg.game, cfg.state, cfg.levels = game, state, []
    elif state is not None:
        cfg.state, cfg.levels = state, []
    cfg.num_envs, cfg.overlap = 1, False
    if episodes < 1:
        raise InvalidArgumentError(f"Expected episodes >= 1, got {episodes}")
    extra = {"record": record} if record else {}
    pool = make_pool(cfg, **extra)
    try:
        obs_shape = pool.single_observation_space.shape
        n_actions = int(pool.single_action_space.n)
        _check_compatible(ckpt, obs_shape, n_actions, checkpoint)
        model = ActorCritic(cfg.network, obs_shape, n_actions)
        load_state(model, ckpt, "model", checkpoint, "PPO2 network")
        model.eval()
        torch.manual_seed(seed)
        obs, _ = pool.reset(seed=seed)
        rewards, total = [], 0.0
        while len(rewards) < episodes:
            with torch.no_grad():
                logits, _ = model(torch.from_numpy(np.array(obs)))
            if greedy:
                action = logits.argmax(-1)
            else:
                action = torch.distributions.Categorical(logits=logits).sample()
            obs, r, term, trunc, _ = pool.step(action.numpy())
            total += float(r[0])
            if term[0] or trunc[0]:
                rewards.append(total)
                total = 0.0
        return rewards
    finally:
        pool.close()


def make_eval_agent(checkpoint: str, greedy: bool = False, seed: int = 0):
    """The ``fastretro eval --agent ppo2:CKPT`` factory of a trained policy.

    Returns:
        ``factory(observation_space, action_space)`` -> an agent with ``act(obs)``;
        ``factory.env_options`` asks the eval's pool for the observation and action set the
        policy was trained on.

    Raises:
        InvalidArgumentError: the checkpoint is refused (:func:`load_checkpoint`, read without
            running code); or, when the factory is called, spaces it does not fit.
    """
    from fastretro.agents.common import IMAGE_OPTIONS, auto_actions

    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt)
    actions = cfg.actions
    if actions == "auto":
        actions = auto_actions([g for g, _ in cfg.levels] or [cfg.game])

    class _Policy:
        def __init__(self, observation_space, action_space) -> None:
            obs_shape = observation_space.shape
            n_actions = int(action_space.n)
            _check_compatible(ckpt, obs_shape, n_actions, checkpoint)
            self.model = ActorCritic(cfg.network, obs_shape, n_actions)
            load_state(self.model, ckpt, "model", checkpoint, "PPO2 network")
            self.model.eval()
            self.generator = torch.Generator().manual_seed(seed)

        def act(self, obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                logits, _ = self.model(torch.from_numpy(np.asarray(obs)))
            if greedy:
                return logits.argmax(-1).numpy()
            return torch.multinomial(logits.softmax(-1), 1, generator=self.generator)[:, 0].numpy()

    _Policy.env_options = {**IMAGE_OPTIONS, "actions": actions}
    return _Policy


# -- command line ----------------------------------------------------------------------------


def _parse_level(text: str) -> tuple[str, str]:
    game, sep, state = text.partition(":")
    if not sep or not game or not state:
        raise argparse.ArgumentTypeError(f"Expected GAME:STATE, got {text!r}")
    return game, state


def main(argv: list[str] | None = None) -> int:
    """``fastretro ppo``: train PPO2 on the pool."""
    parser = argparse.ArgumentParser(
        prog="fastretro ppo",
        description="Train PPO2 on the pool (in-worker 84x84 gray, stack 4). Writes RUN_DIR/"
        "monitor.csv, progress.csv, tb/ and checkpoints/last.pt.",
    )
    parser.add_argument("--run-dir", default="runs/ppo2", help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="hyper-parameter preset")
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--state", default=None)
    parser.add_argument(
        "--level",
        action="append",
        type=_parse_level,
        default=[],
        metavar="GAME:STATE",
        help="joint training: repeat for each level",
    )
    parser.add_argument(
        "--contest-training-levels",
        action="store_true",
        help="joint training on the contest's training levels whose ROM is present",
    )
    parser.add_argument("--init-from", metavar="CKPT", help="fine-tune from these weights")
    parser.add_argument("--resume", metavar="CKPT", help="continue the run of this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    for f in dataclasses.fields(PPO2Config):
        if f.name in ("game", "state", "levels"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "actions":
            parser.add_argument(flag, default=None)
        else:
            kind = {"int": int, "float": float, "float | None": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None)
    args = parser.parse_args(argv)

    values = dict(PRESETS[args.preset]) if args.preset else {}
    for f in dataclasses.fields(PPO2Config):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("game", "state", "levels"):
            values[f.name] = v
    from fastretro.runtime.games import game_id

    game = game_id(args.game)  # "Pong" names Pong-Atari2600-v0
    levels = list(args.level)
    if args.contest_training_levels:
        from fastretro import contest

        levels += [(lv.game, lv.state) for lv in contest.playable(contest.training_levels())]
        if not levels:
            parser.error(
                "no contest training level has its ROM imported (python -m stable_retro.import DIR)"
            )
    try:
        cfg = PPO2Config(game=game, state=args.state, levels=levels, **values)
        summary = train(
            cfg, args.run_dir, resume=args.resume, init_from=args.init_from, progress=not args.quiet
        )
    except InvalidArgumentError as exc:
        parser.error(str(exc))
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['frames']:,} frames in {summary['seconds']:.0f} s "
            f"({summary['frames_per_s']:,.0f} frames/s), {summary['episodes']} episodes, "
            f"mean reward (last 100) {summary['reward_mean100']}; "
            f"checkpoint {summary['checkpoint']}"
        )
    return 0
