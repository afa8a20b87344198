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

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.agents import harness
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import (
    AUTO_ACTIONS,
    ImpalaCNN,
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
        ints = ("num_envs", "total_frames", "n_steps", "n_minibatches", "n_epochs")
        harness.check_fields(self, ints=ints)
        if self.overlap and self.num_envs % 2:
            raise InvalidArgumentError(
                f"overlap splits the envs in two halves: num_envs must be even, got {self.num_envs}"
            )
        if (self.n_steps * self.num_envs) % self.n_minibatches:
            raise InvalidArgumentError(
                f"n_steps * num_envs = {self.n_steps * self.num_envs} does not split into "
                f"{self.n_minibatches} minibatches"
            )
        harness.check_fields(self, positive=("learning_rate",))


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


# -- the network and GAE ---------------------------------------------------------------------


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
    options = dict(actions=cfg.actions, frameskip=cfg.frameskip, sticky_prob=cfg.sticky_prob)
    options.update(
        max_episode_steps=cfg.max_episode_steps, allow_backtracking=cfg.allow_backtracking
    )
    return image_pool(games, states, cfg.scenario, **options, **extra)


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: str, model, optimizer, cfg: PPO2Config, frames: int, **more) -> None:
    """Weights, optimizer, config, frames (and ``more``: plain data), written atomically."""
    state = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), **more)
    _save_tagged(path, "ppo2", dataclasses.asdict(cfg), frames, **state)


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, read without running any code.

    Raises:
        InvalidArgumentError: no file; not a checkpoint; one of the old format (a pickle: the
            message names the command that converts it); another agent's; or one whose
            weights or config are not a PPO2 policy's.
    """
    head = ("policy.weight", "policy layer")
    return harness.load_agent_checkpoint(
        path, "ppo2", "PPO2", head, config_from_checkpoint, "PPO2Config"
    )


def config_from_checkpoint(ckpt: dict) -> PPO2Config:
    """The PPO2Config saved in a checkpoint (levels back to tuples)."""
    values = dict(ckpt["config"])
    values["levels"] = [tuple(lv) for lv in values.get("levels", [])]
    return harness.config_from(PPO2Config, values)


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
    from fastretro.runtime.stats import Stopwatch, available_cores

    run = harness.begin_run(cfg, resume, init_from, load_checkpoint, config_from_checkpoint)
    cfg = run.cfg
    watch = watch or Stopwatch()
    # Lock-step acting and learning both run while the emulators wait, so torch gets every
    # core; overlapped acting shares them with the other half's emulators, so it gets one less.
    cores = available_cores()
    acting = max(1, cores - 1) if cfg.overlap else cores
    threads = (cfg.torch_threads or acting, cores)
    torch.set_num_threads(threads[0])
    torch.manual_seed(cfg.seed)

    per = cfg.num_envs // (2 if cfg.overlap else 1)
    pools = [make_pool(cfg, range(first, first + per)) for first in range(0, cfg.num_envs, per)]
    try:
        obs_shape = pools[0].single_observation_space.shape
        n_actions = int(pools[0].single_action_space.n)
        model = ActorCritic(cfg.network, obs_shape, n_actions).to(run.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, eps=1e-5)
        if run.ckpt is not None:
            _check_compatible(run.ckpt, n_actions, resume)
            load_state(model, run.ckpt, "model", resume, "PPO2 network")
            load_state(optimizer, run.ckpt, "optimizer", resume, "PPO2 optimizer")
        if run.source is not None:
            _check_compatible(run.source, n_actions, init_from)
            load_state(model, run.source, "model", init_from, "PPO2 network")
        learner = _Learner(run, model, optimizer, pools, watch, threads)
        return learner.run(run_dir, resume is not None, progress, max_seconds, on_loop)
    finally:
        for p in pools:
            p.close()


class _Learner:
    """One run's loop: rollouts from the pools (one, or two halves overlapped), then updates."""

    def __init__(self, run, model, optimizer, pools, watch, threads) -> None:
        cfg = self.cfg = run.cfg
        self.model, self.optimizer, self.pools, self.watch = model, optimizer, pools, watch
        self.device, self.threads, self.start_frames = run.device, threads, run.start_frames
        self.rng = torch.Generator().manual_seed(cfg.seed + 1)
        per = cfg.num_envs // len(pools)
        self.halves = [slice(h * per, (h + 1) * per) for h in range(len(pools))]  # pools' rows
        self.ro = Rollout.zeros(cfg.n_steps, cfg.num_envs, pools[0].single_observation_space.shape)
        for h, (pool, rows) in enumerate(zip(pools, self.halves)):
            self.ro.next_obs[rows] = pool.reset(seed=cfg.seed + h * per + run.start_frames)[0]
        self.frames = run.start_frames
        self.episodes = None  # the run's (harness.Episodes), once its loop begins

    def act(self, rows: slice, obs: np.ndarray, t: int) -> np.ndarray:
        """Sample the actions of ``rows`` at step ``t``; store them, their log-probs, values."""
        ro = self.ro
        with self.watch("inference"):
            with torch.inference_mode():
                logits, value = self.model(torch.from_numpy(obs).to(self.device))
                # Categorical's sample and log_prob by hand: the distribution object's argument
                # checks cost more than the sampling at a batch of 8.
                logp = logits.log_softmax(-1)
                action = torch.multinomial(logp.exp(), 1)
                ro.actions[t, rows] = action[:, 0].cpu()
                ro.logprobs[t, rows] = logp.gather(1, action)[:, 0].cpu()
                ro.values[t, rows] = value.cpu()
        return ro.actions[t, rows].numpy()

    def record(self, rows: slice, t: int, result) -> None:
        """Store a pool step's outcome for ``rows`` at step ``t``; book ended episodes."""
        cfg, ro = self.cfg, self.ro
        obs, rewards, terminated, truncated, _ = result
        done = terminated | truncated
        learned = rewards * cfg.reward_scale
        if cfg.clip_reward is not None:
            learned = np.clip(learned, -cfg.clip_reward, cfg.clip_reward)
        ro.rewards[t, rows] = torch.from_numpy(learned).float()
        self.episodes.add(rows, rewards, done, self.frames)
        ro.next_obs[rows] = obs
        ro.next_done[rows] = torch.from_numpy(done.astype(np.float32))

    def collect(self) -> None:
        """One rollout of ``n_steps`` steps of every env."""
        ro, pools, steps = self.ro, self.pools, self.cfg.n_steps
        obs_np, dones, next_obs = ro.obs.numpy(), ro.dones, ro.next_obs
        if len(pools) == 1:
            rows = self.halves[0]
            for t in range(steps):
                obs_np[t] = next_obs
                dones[t] = ro.next_done
                self.record(rows, t, pools[0].step(self.act(rows, next_obs, t)))
            return
        # Double buffering: act for one half while the other half's emulators run.
        ha, hb = self.halves
        obs_np[0, ha] = next_obs[ha]
        dones[0, ha] = ro.next_done[ha]
        pools[0].step_async(self.act(ha, next_obs[ha], 0))
        for t in range(steps):
            obs_np[t, hb] = next_obs[hb]
            dones[t, hb] = ro.next_done[hb]
            pools[1].step_async(self.act(hb, next_obs[hb], t))
            self.record(ha, t, pools[0].step_wait())
            if t + 1 < steps:
                obs_np[t + 1, ha] = next_obs[ha]
                dones[t + 1, ha] = ro.next_done[ha]
                pools[0].step_async(self.act(ha, next_obs[ha], t + 1))
            self.record(hb, t, pools[1].step_wait())

    def run(self, run_dir, resumed, progress, max_seconds, on_loop) -> dict:
        """Rollouts and updates until the budget (frames or ``max_seconds``) is spent."""
        cfg, optimizer, start_frames = self.cfg, self.optimizer, self.start_frames
        frames_per_update = cfg.n_steps * cfg.num_envs * cfg.frameskip
        updates = max(1, -(-(cfg.total_frames - start_frames) // frames_per_update))
        loop = harness.RunLoop(
            run_dir,
            resumed=resumed,
            num_envs=cfg.num_envs,
            start_frames=start_frames,
            checkpoint_every=cfg.checkpoint_every,
            save=lambda path, frames: save_checkpoint(path, self.model, optimizer, cfg, frames),
            bar_total=updates * frames_per_update,
            desc="ppo2",
            progress=progress,
        )
        self.episodes = eps = loop.episodes
        on_loop = on_loop or (lambda phase, pools: None)
        rollout_s = 0.0
        on_loop("start", self.pools)
        try:
            for _ in range(updates):
                if max_seconds is not None and loop.elapsed() > max_seconds:
                    break
                if cfg.anneal_lr:
                    done = (self.frames - start_frames) / max(1, cfg.total_frames - start_frames)
                    optimizer.param_groups[0]["lr"] = cfg.learning_rate * max(0.0, 1.0 - done)
                t0 = time.perf_counter()
                self.collect()
                self.frames += frames_per_update
                t1 = time.perf_counter()
                rollout_s += t1 - t0
                with self.watch("learning"):
                    torch.set_num_threads(self.threads[1])
                    stats = _update(cfg, self.model, optimizer, self.device, self.rng, self.ro)
                    torch.set_num_threads(self.threads[0])
                elapsed = loop.elapsed()
                row = {
                    "frames": self.frames,
                    "episodes": eps.count,
                    "episode/reward_mean100": eps.mean100(),
                    "time/frames_per_s": (self.frames - start_frames) / elapsed,
                    "time/rollout_share": rollout_s / elapsed,
                    "time/update_rollout_s": t1 - t0,
                    "time/update_learn_s": time.perf_counter() - t1,
                    "lr": optimizer.param_groups[0]["lr"],
                    **stats,
                }
                loop.runlog.update(row)
                loop.bar.update(frames_per_update)
                loop.bar.set_postfix(reward=f"{row['episode/reward_mean100']:.1f}", eps=eps.count)
                loop.checkpoints.maybe(self.frames)
            on_loop("end", self.pools)
        finally:
            loop.close(self.frames)
        return loop.summary(self.frames, rollout_s=round(rollout_s, 3))


def _check_compatible(ckpt: dict, n_actions: int, path: str) -> None:
    harness.check_compatible(path, ckpt["model"]["policy.weight"].shape[0], n_actions)
    network = config_from_checkpoint(ckpt).network
    if network not in NETWORKS:
        raise InvalidArgumentError(f"{path!r} has an unknown network {network!r}")


def _update(cfg, model, optimizer, device, rng, ro: Rollout) -> dict:
    """PPO's epochs of minibatch updates on one rollout; returns the losses and diagnostics."""
    with torch.no_grad():
        _, last_value = model(torch.from_numpy(ro.next_obs).to(device))
    advantages, returns = compute_gae(
        ro.rewards, ro.values, ro.dones, last_value.cpu(), ro.next_done, cfg.gamma, cfg.gae_lambda
    )
    b_obs = ro.obs.reshape(-1, *ro.obs.shape[2:])
    b_actions, b_logprobs, b_values = (x.reshape(-1) for x in (ro.actions, ro.logprobs, ro.values))
    b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
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
            v_err = (value - b_returns[idx]) ** 2
            if cfg.clip_value_loss:
                clipped = b_values[idx] + (value - b_values[idx]).clamp(-clip, clip)
                v_err = torch.max(v_err, (clipped - b_returns[idx]) ** 2)
            v_loss = 0.5 * v_err.mean()
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


def _policy(ckpt: dict, cfg: PPO2Config, path: str, greedy: bool, seed: int | None = None):
    """``build(observation_space, action_space) -> choose`` of a checkpoint's policy.

    Samples draw from a generator seeded with ``seed`` (one per agent built), or (None) from
    torch's global generator, as ``Categorical.sample`` does.
    """

    def build(observation_space, action_space):
        n_actions = harness.n_actions_of(action_space)
        _check_compatible(ckpt, n_actions, path)
        model = ActorCritic(cfg.network, observation_space.shape, n_actions)
        load_state(model, ckpt, "model", path, "PPO2 network")
        model.eval()
        generator = None if seed is None else torch.Generator().manual_seed(seed)

        def choose(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():  # np.array: a copy, the pool's is read-only
                logits, _ = model(torch.from_numpy(np.array(obs)))
            if greedy:
                return logits.argmax(-1).numpy()
            if generator is None:
                return torch.distributions.Categorical(logits=logits).sample().numpy()
            return torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0].numpy()

        return choose

    return build


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
    if game is not None or state is not None:
        cfg.game, cfg.state, cfg.levels = game or cfg.game, state, []
    cfg.num_envs, cfg.overlap = 1, False
    if episodes < 1:
        raise InvalidArgumentError(f"Expected episodes >= 1, got {episodes}")
    pool = make_pool(cfg, **({"record": record} if record else {}))
    return harness.play_on(pool, _policy(ckpt, cfg, checkpoint, greedy), episodes, seed)


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
    build = _policy(ckpt, cfg, checkpoint, greedy, seed)
    return harness.eval_factory(build, {**IMAGE_OPTIONS, "actions": actions})


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``fastretro ppo``: train PPO2 on the pool."""
    skip = ("game", "state", "levels")
    parser = harness.config_parser(
        "fastretro ppo",
        "Train PPO2 on the pool (in-worker 84x84 gray, stack 4). Writes RUN_DIR/"
        "monitor.csv, progress.csv, tb/ and checkpoints/last.pt.",
        PPO2Config,
        PRESETS,
        "runs/ppo2",
        skip=skip,
        more=harness.level_flags,
    )
    args = parser.parse_args(argv)
    values = harness.config_values(args, PPO2Config, PRESETS, skip)
    from fastretro.runtime.games import game_id

    game = game_id(args.game)  # "Pong" names Pong-Atari2600-v0
    levels = harness.levels_of(parser, args)

    def make_config() -> PPO2Config:
        return PPO2Config(game=game, state=args.state, levels=levels, **values)

    return harness.run_training(parser, args, make_config, train)
