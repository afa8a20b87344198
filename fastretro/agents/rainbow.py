"""Rainbow DQN on the pool: the Retro Contest's other baseline; its learning reads top to bottom.

PyTorch Rainbow (Hessel et al. 2018) in CleanRL's shape: a Nature CNN trunk, a noisy hidden
layer and dueling value/advantage heads of noisy layers (factorised Gaussian noise; the noise is
the exploration, no epsilon-greedy), a C51 distributional output, double-Q targets, n-step
returns, prioritized replay and a target network. The replay memory and its hot paths (sum
tree, n-step returns, frame stacks rebuilt from single frames) are numba kernels in
:mod:`fastretro.agents.replay`. The layout of the heads is anyrl's (the contest's Rainbow): one
noisy 512-unit hidden layer shared by both heads; the paper gives each stream its own.

Its config (:class:`RainbowConfig`) and presets (``retro-baselines``, ``atari``, ``fast``: the
defaults) are in :mod:`fastretro.agents.rainbow_config`.

Acting while learning. The emulators run while the learner trains: each loop sends the actions
(``step_async``), runs the gradient steps that are due, then collects the step (``step_wait``).
An async pool (``env_batch=M``: ``send``/``recv`` on the first M envs to finish) is the other
option; on the 2-core machine both gave the same frames per second within noise (the learner
takes the time: a gradient step costs ~6 emulator steps), so lock-step is the default: every
env then advances one step per loop, and the replay's rings fill evenly
(``python bench/bench_rainbow.py speed`` compares the two).

Checkpoints hold the online and target weights, the optimizer, the config, the frame count and
the action set; not the replay memory (500,000 frames are 3.5 GB): ``--resume`` starts with an
empty memory, acts with the loaded network and learns again once ``learning_starts`` new
transitions are in. ``--init-from`` takes the weights only (new optimizer, frames from 0) and
refuses a checkpoint of another action set. Checkpoints hold tensors and plain data only and are
opened without running code (:mod:`fastretro.agents.checkpoints`).

A run directory holds ``monitor.csv`` (one row per episode), ``progress.csv`` (a row every
``log_every`` frames), TensorBoard scalars and ``checkpoints/``; ``fastretro plot RUN_DIR``
draws the learning curve.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fastretro.agents import harness
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import NatureCNN, auto_actions, image_pool, torch
from fastretro.agents.rainbow_config import HW, PRESETS, STACK, RainbowConfig
from fastretro.agents.replay import PrioritizedReplay
from fastretro.errors import InvalidArgumentError

nn = torch.nn
F = torch.nn.functional

__all__ = [
    "PRESETS",
    "NoisyLinear",
    "RainbowConfig",
    "RainbowNet",
    "load_checkpoint",
    "main",
    "make_eval_agent",
    "play",
    "project_distribution",
    "train",
]


# -- the network -----------------------------------------------------------------------------


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian noise on its weights (Fortunato et al. 2018).

    ``W = mu_W + sigma_W * (f(eps_out) f(eps_in)^T)``, ``b = mu_b + sigma_b * f(eps_out)``,
    ``f(x) = sign(x) sqrt(|x|)``: p + q noise draws per layer instead of p * q. The noise is
    redrawn by :meth:`reset_noise`; in eval mode the layer uses the means only.
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(
            torch.empty(out_features, in_features).uniform_(-bound, bound)
        )
        self.weight_sigma = nn.Parameter(torch.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((out_features,), sigma0 * bound))
        # The noise is not the model: it stays out of state_dict and checkpoints.
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)
        self.reset_noise()

    @staticmethod
    def _scaled(n: int) -> torch.Tensor:
        x = torch.randn(n)
        return x.sign() * x.abs().sqrt()

    def reset_noise(self) -> None:
        """Draw new noise (it stays until the next call)."""
        self.eps_in.copy_(self._scaled(self.in_features))
        self.eps_out.copy_(self._scaled(self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W.T + b`` with noisy weights in train mode, mean weights in eval mode."""
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)


class RainbowNet(nn.Module):
    """Nature CNN convolutions, a noisy hidden layer, dueling noisy heads, C51 logits."""

    def __init__(self, obs_shape, n_actions: int, num_atoms: int = 51, sigma0: float = 0.5) -> None:
        super().__init__()
        c, h, w = obs_shape
        cnn = NatureCNN(c, (h, w))
        # The convolutions (the hidden layer below is noisy instead), channels-last: oneDNN's
        # convolutions take ~20% less time that way on this project's CPU (batch 32, fwd+bwd).
        self.trunk = cnn.body.to(memory_format=torch.channels_last)
        self.hidden = NoisyLinear(cnn.fc[0].in_features, 512, sigma0)
        self.value = NoisyLinear(512, num_atoms, sigma0)
        self.advantage = NoisyLinear(512, n_actions * num_atoms, sigma0)
        self.n_actions, self.num_atoms = n_actions, num_atoms

    def reset_noise(self) -> None:
        """New noise in every noisy layer."""
        for layer in (self.hidden, self.value, self.advantage):
            layer.reset_noise()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (N, actions, atoms) of the return distributions of uint8 obs (N, C, H, W)."""
        x = torch.mul(obs, 1.0 / 255.0).contiguous(memory_format=torch.channels_last)
        x = F.relu(self.hidden(self.trunk(x)))
        value = self.value(x).view(-1, 1, self.num_atoms)
        adv = self.advantage(x).view(-1, self.n_actions, self.num_atoms)
        return value + adv - adv.mean(1, keepdim=True)


def q_values(model: RainbowNet, obs: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Expected returns (N, actions): each action's distribution averaged over the atoms."""
    return (model(obs).softmax(-1) * support).sum(-1)


# -- the categorical projection --------------------------------------------------------------


def project_distribution(
    next_probs: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """C51's target: ``returns + discounts * z`` projected back onto the atoms ``support``.

    Args:
        next_probs: (B, atoms) probabilities of the next state's distribution.
        returns: (B,) n-step returns.
        discounts: (B,) ``gamma^m``, 0 where the episode ended.
        support: (atoms,) evenly spaced atom values.

    Returns:
        (B, atoms): each moved atom's probability split between its two neighbouring atoms in
        proportion to closeness (Bellemare et al. 2017, Algorithm 1).
    """
    atoms = support.shape[0]
    v_min, v_max = float(support[0]), float(support[-1])
    dz = (v_max - v_min) / (atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support[None]).clamp(v_min, v_max)
    b = (tz - v_min) / dz
    lo, hi = b.floor(), b.ceil()
    # Where b lands on an atom, lo == hi and both weights below are 0: give it all to lo.
    w_lo = next_probs * (hi - b + (lo == hi))
    w_hi = next_probs * (b - lo)
    m = torch.zeros_like(next_probs)
    m.scatter_add_(1, lo.long(), w_lo)
    m.scatter_add_(1, hi.long(), w_hi)
    return m


# -- the environment -------------------------------------------------------------------------


def action_set(cfg: RainbowConfig):
    """The action set ``cfg.actions`` names, with ``auto`` resolved for ``cfg.game``."""
    return auto_actions([cfg.game]) if cfg.actions == "auto" else cfg.actions


def make_pool(cfg: RainbowConfig, **extra):
    """The VecRetroEnv the agent acts on: in-worker preprocessing, same-step autoreset."""
    options = dict(
        actions=action_set(cfg),
        frameskip=cfg.frameskip,
        sticky_prob=cfg.sticky_prob,
        max_pool=cfg.max_pool,
        max_episode_steps=cfg.max_episode_steps,
        allow_backtracking=cfg.allow_backtracking,
    )
    if cfg.env_batch:
        options["batch_size"] = cfg.env_batch
    n = cfg.num_envs
    return image_pool([cfg.game] * n, [cfg.state] * n, cfg.scenario, **{**options, **extra})


# -- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(path: str, model, target, optimizer, cfg: RainbowConfig, frames: int) -> None:
    """Online and target weights, optimizer, config, frames and action set, written atomically."""
    _save_tagged(
        path,
        "rainbow",
        dataclasses.asdict(cfg),
        frames,
        model=model.state_dict(),
        target=target.state_dict(),
        optimizer=optimizer.state_dict(),
        action_set=action_set(cfg),
    )


def load_checkpoint(path: str) -> dict:
    """A checkpoint written by :func:`save_checkpoint`, read without running any code.

    Raises:
        InvalidArgumentError: no file; not a checkpoint; one of the old format (a pickle: the
            message names the command that converts it); another agent's; or one whose
            weights, config or action set are not a Rainbow network's.
    """
    head = ("advantage.weight_mu", "advantage head")
    ckpt = harness.load_agent_checkpoint(
        path, "rainbow", "Rainbow", head, config_from_checkpoint, "RainbowConfig"
    )
    bad = f"{path!r} is not a fastretro Rainbow checkpoint:"
    # Checkpoints from before the action set was saved have none.
    if not isinstance(ckpt.get("action_set", ""), (str, list, tuple)):
        raise InvalidArgumentError(f"{bad} its 'action_set' is not a name or a list of combos")
    num_atoms = config_from_checkpoint(ckpt).num_atoms
    if type(num_atoms) is not int or num_atoms < 1:
        raise InvalidArgumentError(f"{bad} its 'config' has num_atoms={num_atoms!r}")
    return ckpt


def config_from_checkpoint(ckpt: dict) -> RainbowConfig:
    """The RainbowConfig saved in a checkpoint."""
    return harness.config_from(RainbowConfig, ckpt["config"])


def _check_compatible(ckpt: dict, actions, n_actions: int, path: str) -> None:
    trained = (
        ckpt["model"]["advantage.weight_mu"].shape[0] // config_from_checkpoint(ckpt).num_atoms
    )
    harness.check_compatible(path, trained, n_actions, ckpt.get("action_set"), actions)


def _model_from(ckpt: dict, cfg: RainbowConfig, n_actions: int, path: str) -> RainbowNet:
    model = RainbowNet((STACK, *HW), n_actions, cfg.num_atoms, cfg.noisy_sigma0)
    load_state(model, ckpt, "model", path, "Rainbow network")
    return model


# -- training --------------------------------------------------------------------------------


def train(
    cfg: RainbowConfig,
    run_dir: str,
    *,
    resume: str | None = None,
    init_from: str | None = None,
    watch=None,
    progress: bool = True,
    max_seconds: float | None = None,
    on_loop=None,
) -> dict:
    """Train Rainbow as ``cfg`` says; write logs and checkpoints under ``run_dir``.

    Args:
        cfg: the run's configuration (ignored, but for ``total_frames``, when ``resume``).
        run_dir: where monitor.csv, progress.csv, tb/ and checkpoints/ go.
        resume: a checkpoint of this run to continue (weights, target, optimizer, config,
            frames; the replay memory starts empty).
        init_from: a checkpoint whose weights start this run (fine-tuning; new optimizer).
        watch: a :class:`fastretro.runtime.stats.Stopwatch` for ``inference`` (acting), ``sampling``
            (drawing batches from the replay memory) and ``learning`` (gradient steps).
        progress: show a progress bar.
        max_seconds: stop after this much wall-clock (the profiler's budget).
        on_loop: ``on_loop("start" | "end", pools)`` is called just before the first step and
            just after the last (the profiler reads the pools' stats in that window).

    Returns:
        A summary: frames, episodes, mean reward of the last 100 episodes, seconds, frames/s,
        gradient steps, and the final checkpoint's path.
    """
    from fastretro.runtime.stats import Stopwatch, available_cores

    run = harness.begin_run(cfg, resume, init_from, load_checkpoint, config_from_checkpoint)
    cfg = run.cfg
    watch = watch or Stopwatch()
    torch.set_num_threads(cfg.torch_threads or available_cores())
    torch.manual_seed(cfg.seed)
    pool = make_pool(cfg)
    try:
        model, target, optimizer = _networks(
            run, int(pool.single_action_space.n), resume, init_from
        )
        learner = _Learner(run, pool, model, target, optimizer, watch)
        return learner.run(run_dir, resume is not None, progress, max_seconds, on_loop)
    finally:
        pool.close()


def _networks(run: harness.RunStart, n_actions: int, resume, init_from):
    """The online and target networks and the optimizer, from the checkpoint where one is given."""
    cfg, ckpt, source = run.cfg, run.ckpt, run.source
    if source is not None:
        _check_compatible(source, action_set(cfg), n_actions, init_from)
    model = RainbowNet((STACK, *HW), n_actions, cfg.num_atoms, cfg.noisy_sigma0).to(run.device)
    target = RainbowNet((STACK, *HW), n_actions, cfg.num_atoms, cfg.noisy_sigma0).to(run.device)
    # The fused step: one pass over the 3.5M parameters instead of one per operation.
    optimizer = torch.optim.Adam(
        model.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True
    )
    if ckpt is not None:
        load_state(model, ckpt, "model", resume, "Rainbow network")
        load_state(target, ckpt, "target" if "target" in ckpt else "model", resume, "network")
        load_state(optimizer, ckpt, "optimizer", resume, "Rainbow optimizer")
    elif source is not None:
        load_state(model, source, "model", init_from, "Rainbow network")
        load_state(target, source, "model", init_from, "Rainbow network")
    else:
        target.load_state_dict(model.state_dict())
    for p in target.parameters():
        p.requires_grad_(False)
    return model, target, optimizer


class _Learner:
    """One run: act on the pool, fill the replay memory, learn while the emulators step."""

    def __init__(self, run: harness.RunStart, pool, model, target, optimizer, watch) -> None:
        cfg = self.cfg = run.cfg
        self.pool, self.model, self.target, self.optimizer = pool, model, target, optimizer
        self.watch, self.device, self.start_frames = watch, run.device, run.start_frames
        self.rng = np.random.default_rng(cfg.seed)
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, device=run.device)
        self.replay = PrioritizedReplay(
            cfg.buffer_size,
            cfg.num_envs,
            HW,
            STACK,
            cfg.n_step,
            cfg.gamma,
            cfg.alpha,
            cfg.priority_eps,
        )
        self.last_actions = np.zeros(cfg.num_envs, np.int64)
        self.frames = run.start_frames
        self.steps = self.run_start_steps = self.last_target = run.start_frames // cfg.frameskip
        self.total_steps = max(1, cfg.total_frames // cfg.frameskip)
        self.updates, self.updates_due, self.logged = 0, 0.0, 0
        self.sums: dict[str, float] = {}
        self.loop: harness.RunLoop | None = None

    def beta(self) -> float:
        """The importance-sampling exponent now: from ``beta`` to ``beta_final`` over the run."""
        cfg = self.cfg
        return cfg.beta + (cfg.beta_final - cfg.beta) * min(1.0, self.steps / self.total_steps)

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The greedy actions of freshly noisy online weights."""
        with self.watch("inference"):
            with torch.inference_mode():
                self.model.reset_noise()
                q = q_values(self.model, torch.from_numpy(obs).to(self.device), self.support)
                return q.argmax(1).cpu().numpy()

    def learn(self, k: int) -> None:
        """``k`` gradient steps on batches drawn from the memory; new priorities."""
        cfg, replay = self.cfg, self.replay
        beta = self.beta()
        for _ in range(k):
            with self.watch("sampling"):
                batch = replay.sample(cfg.batch_size, beta, self.rng)
            with self.watch("learning"):
                out = _learn_step(
                    cfg, self.model, self.target, self.optimizer, self.support, batch, self.device
                )
                replay.update_priorities(batch["slots"], out.pop("priority"))
            for key, v in out.items():
                self.sums[key] = self.sums.get(key, 0.0) + v
            self.updates += 1

    def record(self, ids, actions, rewards, terminated, truncated, obs, final_obs) -> None:
        """Store the step of envs ``ids`` in the memory; book ended episodes."""
        cfg = self.cfg
        done = terminated | truncated
        learn_rewards = rewards * cfg.reward_scale
        if cfg.clip_reward:
            learn_rewards = np.clip(learn_rewards, -cfg.clip_reward, cfg.clip_reward)
        final = None
        if done.any():
            final = np.array(obs)
            for j in np.flatnonzero(done):
                final[j] = final_obs[j]
        self.replay.append(ids, actions, learn_rewards, terminated, truncated, obs, final)
        self.loop.episodes.add(ids, rewards, done, self.frames)

    def log_row(self) -> None:
        """A progress.csv row: means over the gradient steps since the last row."""
        loop, eps, cfg = self.loop, self.loop.episodes, self.cfg
        elapsed = loop.elapsed()
        row = {
            "frames": self.frames,
            "episodes": eps.count,
            "episode/reward_mean100": eps.mean100(),
            "time/seconds": elapsed,
            "time/frames_per_s": (self.frames - self.start_frames) / elapsed,
            "time/updates_per_s": self.updates / elapsed,
            "updates": self.updates,
            "replay/transitions": min(len(self.replay), self.replay.ring * cfg.num_envs),
            "beta": self.beta(),
            **{k: self.sums.get(k, math.nan) / max(1, self.updates - self.logged) for k in _STATS},
        }
        loop.runlog.update(row)
        self.sums.clear()
        self.logged = self.updates
        loop.bar.set_postfix(reward=f"{row['episode/reward_mean100']:.1f}", eps=eps.count)

    def receive(self, ids: np.ndarray, started: np.ndarray):
        """The pool's next results: ``(obs, ids, step)``, ``step`` None when only resets came.

        ``step``: the stepped envs, their rewards, terminated, truncated, observations and final
        observations. With ``env_batch``, the first envs to finish (stepped, or reset the first
        time round: those begin their episodes in the memory); else every env.
        """
        if not self.cfg.env_batch:
            obs, rewards, terminated, truncated, infos = self.pool.step_wait()
            obs = np.array(obs)
            return obs, ids, (ids, rewards, terminated, truncated, obs, infos.get("final_obs"))
        obs, rewards, terminated, truncated, infos = self.pool.recv()
        ids = infos["env_id"]
        fresh = ~started[ids]
        if not fresh.any():
            return obs, ids, (ids, rewards, terminated, truncated, obs, infos.get("final_obs"))
        self.replay.begin(ids[fresh], obs[fresh])
        started[ids[fresh]] = True
        if fresh.all():
            return obs, ids, None
        keep = ~fresh
        final_obs = infos.get("final_obs")
        final_obs = None if final_obs is None else final_obs[keep]
        step = (ids[keep], rewards[keep], terminated[keep], truncated[keep], obs[keep], final_obs)
        return obs, ids, step

    def run(self, run_dir, resumed, progress, max_seconds, on_loop) -> dict:
        """Act, learn and store until the budget (frames or ``max_seconds``) is spent."""
        cfg, pool, replay = self.cfg, self.pool, self.replay
        self.loop = loop = harness.RunLoop(
            run_dir,
            resumed=resumed,
            num_envs=cfg.num_envs,
            start_frames=self.start_frames,
            checkpoint_every=cfg.checkpoint_every,
            save=lambda path, frames: save_checkpoint(
                path, self.model, self.target, self.optimizer, cfg, frames
            ),
            bar_total=max(0, cfg.total_frames - self.start_frames),
            desc="rainbow",
            progress=progress,
        )
        on_loop = on_loop or (lambda phase, pools: None)
        last_log = self.start_frames
        ids = np.arange(cfg.num_envs)
        started = np.zeros(cfg.num_envs, bool)
        seed = cfg.seed + self.start_frames
        if cfg.env_batch:
            pool.async_reset(seed=seed)
            obs = None
        else:
            obs = np.array(pool.reset(seed=seed)[0])
            replay.begin(ids, obs)
        on_loop("start", [pool])
        try:
            while self.frames < cfg.total_frames:
                if max_seconds is not None and loop.elapsed() > max_seconds:
                    break
                if obs is not None:
                    self.last_actions[ids] = actions = self.act(obs)
                    if cfg.env_batch:
                        pool.send(actions, ids)
                    else:
                        pool.step_async(actions)
                # The emulators step while the learner trains on what the memory holds.
                k, self.updates_due = _due(cfg, len(replay), self.updates_due)
                self.learn(k)
                obs, ids, step = self.receive(ids, started)
                if step is None:
                    continue
                stepped = step[0]
                taken = len(stepped)
                self.steps += taken
                self.frames += taken * cfg.frameskip
                self.record(stepped, self.last_actions[stepped], *step[1:])
                if len(replay) >= cfg.learning_starts:
                    self.updates_due += taken / cfg.train_interval
                if self.steps - self.last_target >= cfg.target_interval:
                    self.target.load_state_dict(self.model.state_dict())
                    self.last_target = self.steps
                loop.bar.update(taken * cfg.frameskip)
                if self.frames - last_log >= cfg.log_every:
                    last_log = self.frames
                    self.log_row()
                loop.checkpoints.maybe(self.frames)
            on_loop("end", [pool])
        finally:
            loop.close(self.frames)
        steps = self.steps - self.run_start_steps
        return loop.summary(self.frames, updates=self.updates, steps=steps)


def _due(cfg: RainbowConfig, stored: int, due: float) -> tuple[int, float]:
    """Gradient steps to take now and the fraction left over, once learning has started."""
    if stored < cfg.learning_starts or stored < cfg.batch_size:
        return 0, due
    k = int(due)
    return k, due - k


#: What each gradient step reports (progress.csv: means over the steps since the last row).
_STATS = ("loss/kl", "q/taken_mean")


def _learn_step(cfg, model, target, optimizer, support, batch, device) -> dict:
    """One gradient step on a sampled batch; returns the losses and the new priorities."""
    obs = torch.from_numpy(batch["obs"]).to(device)
    next_obs = torch.from_numpy(batch["next_obs"]).to(device)
    actions = torch.from_numpy(batch["actions"]).to(device)
    returns = torch.from_numpy(batch["returns"]).to(device)
    discounts = torch.from_numpy(batch["discounts"]).to(device)
    weights = torch.from_numpy(batch["weights"]).to(device)
    rows = torch.arange(obs.shape[0], device=device)
    model.reset_noise()
    target.reset_noise()
    with torch.no_grad():
        target_probs = target(next_obs).softmax(-1)
        if cfg.double_q:
            next_q = q_values(model, next_obs, support)
        else:
            next_q = (target_probs * support).sum(-1)
        next_probs = target_probs[rows, next_q.argmax(1)]
        m = project_distribution(next_probs, returns, discounts, support)
    log_p = model(obs)[rows, actions].log_softmax(-1)
    # KL(m || p): the cross-entropy less m's entropy, which has no gradient but makes the
    # priority 0 for a perfect prediction (anyrl's loss and priority).
    kl = (torch.xlogy(m, m) - m * log_p).sum(-1)
    loss = (weights * kl).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.max_grad_norm:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    optimizer.step()
    with torch.no_grad():
        q_taken = (log_p.exp() * support).sum(-1).mean()
    return {
        "loss/kl": float(loss.detach()),
        "q/taken_mean": float(q_taken),
        "priority": kl.detach().cpu().numpy(),
    }


# -- playing a trained network ---------------------------------------------------------------


def _policy(ckpt: dict, cfg: RainbowConfig, actions, path: str, greedy: bool):
    """``build(observation_space, action_space) -> choose``: the argmax of expected returns.

    ``greedy``: the noisy layers' mean weights (True) or fresh noise each step (False).
    """

    def build(observation_space, action_space):
        shape = tuple(observation_space.shape)
        if shape != (STACK, *HW):
            raise InvalidArgumentError(
                f"Expected observations of shape {(STACK, *HW)}, got {shape}: use the "
                "factory's env_options"
            )
        n_actions = harness.n_actions_of(action_space)
        _check_compatible(ckpt, actions, n_actions, path)
        model = _model_from(ckpt, cfg, n_actions, path)
        model.train(not greedy)
        support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms)

        def choose(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                if not greedy:
                    model.reset_noise()
                obs = torch.from_numpy(np.array(obs))  # a copy: the pool's is read-only
                return q_values(model, obs, support).argmax(1).numpy()

        return choose

    return build


def play(
    checkpoint: str,
    game: str | None = None,
    state: str | None = None,
    episodes: int = 1,
    record: str | None = None,
    greedy: bool = True,
    seed: int = 0,
) -> list[float]:
    """Run a trained network for ``episodes`` episodes on one env; return their rewards.

    ``greedy``: act on the noisy layers' mean weights (True) or on freshly drawn noise each
    step (False, as in training). ``record``: a folder for one .bk2 movie per episode.
    """
    if episodes < 1:
        raise InvalidArgumentError(f"Expected episodes >= 1, got {episodes}")
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt)
    if game is not None or state is not None:
        cfg.game, cfg.state = game or cfg.game, state
    cfg.num_envs, cfg.env_batch = 1, 0
    # The checkpoint's action set, whatever "auto" would mean for another game.
    cfg.actions = ckpt.get("action_set", action_set(cfg))
    pool = make_pool(cfg, **({"record": record} if record else {}))
    build = _policy(ckpt, cfg, cfg.actions, checkpoint, greedy)
    return harness.play_on(pool, build, episodes, seed)


def make_eval_agent(checkpoint: str, greedy: bool = True):
    """A ``fastretro eval`` agent factory for a trained checkpoint (contest/evaluate.py).

    ``factory(observation_space, action_space)`` returns an agent with ``act(obs) -> actions``;
    ``factory.env_options`` are the pool options it needs (its action set, 84x84 gray, stack 4,
    channels first, and the max-pool it trained with). ``greedy``: the noisy layers' mean
    weights (True) or fresh noise each step (False).

    Raises:
        InvalidArgumentError: not a Rainbow checkpoint; or, when the factory is called, spaces
            that do not match the checkpoint's.
    """
    ckpt = load_checkpoint(checkpoint)
    cfg = config_from_checkpoint(ckpt)
    actions = ckpt.get("action_set", action_set(cfg))
    options = dict(actions=actions, grayscale=True, resize=HW, max_pool=cfg.max_pool)
    options.update(frame_stack=STACK, channels_first=True)
    return harness.eval_factory(_policy(ckpt, cfg, actions, checkpoint, greedy), options)


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``fastretro rainbow``: train Rainbow on the pool."""
    parser = harness.config_parser(
        "fastretro rainbow",
        "Train Rainbow DQN on the pool (in-worker 84x84 gray, stack 4). Writes "
        "RUN_DIR/monitor.csv, progress.csv, tb/ and checkpoints/last.pt.",
        RainbowConfig,
        PRESETS,
        "runs/rainbow",
    )
    args = parser.parse_args(argv)
    values = harness.config_values(args, RainbowConfig, PRESETS)
    if "game" in values:
        from fastretro.runtime.games import game_id

        values["game"] = game_id(values["game"])  # "Pong" names Pong-Atari2600-v0
    return harness.run_training(
        parser,
        args,
        lambda: RainbowConfig(**values),
        train,
        also=lambda summary: f"{summary['updates']:,} gradient steps, ",
    )
