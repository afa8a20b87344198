"""Rainbow DQN on the pool: the Retro Contest's other baseline, one file that reads top to bottom.

PyTorch Rainbow (Hessel et al. 2018) in CleanRL's shape: a Nature CNN trunk, a noisy hidden
layer and dueling value/advantage heads of noisy layers (factorised Gaussian noise; the noise is
the exploration, no epsilon-greedy), a C51 distributional output, double-Q targets, n-step
returns, prioritized replay and a target network. The replay memory and its hot paths (sum
tree, n-step returns, frame stacks rebuilt from single frames) are numba kernels in
:mod:`fastretro.agents.replay`. The layout of the heads is anyrl's (the contest's Rainbow): one
noisy 512-unit hidden layer shared by both heads; the paper gives each stream its own.

Presets:

- ``retro-baselines``: retro-baselines' agents/rainbow_agent.py on anyrl: Adam lr 1e-4 (eps
  1.5e-4, anyrl's default), gamma 0.99, 3-step returns, prioritized replay of 500,000 (alpha
  0.5, beta 0.4 fixed, priority eps 0.1), learning from 20,000 transitions, one batch of 32 per
  env step, target every 8,192 steps, 51 atoms over [-200, 200], sigma0 0.5, AllowBacktracking,
  raw rewards, one env; the contest's env (4 frames per step, sticky 0.25, no max-pool: the
  contest's WarpFrame saw the step's last frame);
- ``atari``: the Rainbow paper's Atari table (lr 6.25e-5, Adam eps 1.5e-4, 3-step, target every
  8,000 agent steps, learning from 20,000, 1M replay, alpha 0.5, beta 0.4 -> 1, 51 atoms over
  [-10, 10], batch 32 every 4 agent steps, sigma0 0.5, rewards clipped to [-1, 1]);
- ``fast``: what learned fastest per wall-clock second on this project's 2-core CPU VM
  (bench/bench_rainbow.py learn: 4.55x the random agent on Airstriker in 1M frames, 64 min): 8
  envs, a batch of 32 every 8 agent steps, 10-step returns, lr 2.5e-4, learning from 5,000
  steps, a 100k memory, the target every 2,000 steps, one torch thread (the preset's comment
  says why). These are the config's defaults.

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

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import load_state
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.common import NatureCNN, RunLog, auto_actions, image_pool, torch
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

STACK = 4  # frames per observation (the pool's frame_stack)
HW = (84, 84)


@dataclass
class RainbowConfig:
    """Everything a run needs; saved in every checkpoint."""

    game: str = DEFAULT_GAME
    """Game id (``-v0``)."""
    state: str | None = None
    """Start state of ``game``; None: the game's default."""
    scenario: str | None = None
    """Scenario name; None: ``contest`` where the game has one, else the game's default."""
    num_envs: int = 8
    """Emulators (worker processes)."""
    total_frames: int = 1_000_000
    """Emulator frames to train for (agent steps x frameskip, all envs)."""
    actions: str | list = "auto"
    """Action set: ``auto`` is ``sonic7`` on Sonic, a 10-action set on Airstriker and
    ``discrete`` otherwise (fastretro.agents.common.AUTO_ACTIONS)."""
    frameskip: int = 4
    """Emulator frames per agent step."""
    sticky_prob: float = 0.25
    """The contest's sticky frame timing."""
    max_pool: bool = True
    """Observe the max of each step's last two frames (the Atari habit; the contest's
    wrappers saw the last frame only)."""
    max_episode_steps: int = 4500
    """Episode length limit in agent steps (the contest's 4500)."""
    allow_backtracking: bool = False
    """Reward only new maximum x (retro-baselines' AllowBacktracking; Sonic scenarios)."""
    reward_scale: float = 0.05
    """Rewards are multiplied by this for learning (logged rewards are the game's)."""
    clip_reward: float = 0.0
    """Clip the scaled rewards to [-clip_reward, clip_reward] for learning; 0: no clipping."""
    learning_rate: float = 2.5e-4
    """Adam's learning rate."""
    adam_eps: float = 1.5e-4
    """Adam's epsilon."""
    gamma: float = 0.99
    """Discount."""
    n_step: int = 10
    """Steps per return (multi-step learning)."""
    buffer_size: int = 100_000
    """Replay capacity in transitions (frames kept), all envs together."""
    alpha: float = 0.5
    """Priority exponent (0: uniform replay)."""
    beta: float = 0.4
    """Importance-sampling exponent at the start."""
    beta_final: float = 1.0
    """Importance-sampling exponent at the end of the run, reached linearly."""
    priority_eps: float = 0.1
    """Added to each transition's loss before the exponent."""
    learning_starts: int = 5_000
    """Transitions (agent steps, all envs) in the memory before the first gradient step."""
    batch_size: int = 32
    """Transitions per gradient step."""
    train_interval: int = 8
    """Agent steps (all envs) per gradient step."""
    target_interval: int = 2_000
    """Agent steps (all envs) between copies of the online network into the target."""
    num_atoms: int = 51
    """Atoms of the return distribution (C51)."""
    v_min: float = -10.0
    """Smallest atom."""
    v_max: float = 10.0
    """Largest atom."""
    noisy_sigma0: float = 0.5
    """Initial noise scale of the noisy layers (sigma = sigma0 / sqrt(fan_in))."""
    double_q: bool = True
    """Double Q-learning: the online network picks the next action, the target rates it."""
    max_grad_norm: float = 10.0
    """Gradient norm clip; 0: none (anyrl clips nothing)."""
    env_batch: int = 0
    """Async pool: act on the first ``env_batch`` envs to finish while the others run; 0:
    lock-step ``step_async``, learn, ``step_wait``."""
    seed: int = 0
    """Seeds torch, the replay sampling and the pool's sticky frames."""
    device: str = "auto"
    """``cpu``, ``cuda`` or ``auto`` (cuda when present)."""
    torch_threads: int = 1
    """torch threads; 0: every core. One leaves the other core of a 2-core machine to the
    emulators, which step while the learner trains (bench/bench_rainbow.py speed)."""
    checkpoint_every: int = 0
    """Save a checkpoint every this many frames (0: only at the end)."""
    log_every: int = 20_000
    """Frames between progress.csv rows."""

    def check(self) -> None:
        """Raise InvalidArgumentError on a bad value, naming it."""
        for name in (
            "num_envs",
            "total_frames",
            "frameskip",
            "max_episode_steps",
            "n_step",
            "buffer_size",
            "batch_size",
            "train_interval",
            "target_interval",
            "log_every",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
        for name in ("learning_starts", "env_batch", "torch_threads", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 0, got {value!r}")
        if not isinstance(self.num_atoms, int) or self.num_atoms < 2:
            raise InvalidArgumentError(
                f"Expected num_atoms to be an int >= 2, got {self.num_atoms!r}"
            )
        for name in ("learning_rate", "adam_eps", "priority_eps", "reward_scale"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidArgumentError(f"Expected {name} > 0, got {value!r}")
        for name in ("gamma", "alpha", "beta", "beta_final", "sticky_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidArgumentError(f"Expected {name} in [0, 1], got {value!r}")
        for name in ("clip_reward", "max_grad_norm", "noisy_sigma0"):
            value = getattr(self, name)
            if not value >= 0:
                raise InvalidArgumentError(f"Expected {name} >= 0, got {value!r}")
        if not self.v_min < self.v_max:
            raise InvalidArgumentError(
                f"Expected v_min < v_max, got v_min={self.v_min!r}, v_max={self.v_max!r}"
            )
        if self.env_batch and not self.env_batch < self.num_envs:
            raise InvalidArgumentError(
                f"Expected env_batch < num_envs ({self.num_envs}) for an async pool, or 0, "
                f"got {self.env_batch}"
            )
        if self.buffer_size < self.batch_size:
            raise InvalidArgumentError(
                f"Expected buffer_size >= batch_size ({self.batch_size}), got {self.buffer_size}"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InvalidArgumentError(
                f"Expected device to be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}"
            )


PRESETS: dict[str, dict] = {
    # retro-baselines agents/rainbow_agent.py: DQN(*rainbow_models(min_val=-200, max_val=200)),
    # NStepPlayer(..., 3), dqn.optimize(learning_rate=1e-4) (anyrl's Adam epsilon 1.5e-4),
    # PrioritizedReplayBuffer(500000, 0.5, 0.4, epsilon=0.1), train_interval=1,
    # target_interval=8192, batch_size=32, min_buffer_size=20000; AllowBacktracking, raw
    # rewards, one env. anyrl's noisy layers use sigma0 0.5 and clip no gradient.
    "retro-baselines": dict(
        num_envs=1,
        max_pool=False,
        allow_backtracking=True,
        reward_scale=1.0,
        clip_reward=0.0,
        learning_rate=1e-4,
        adam_eps=1.5e-4,
        gamma=0.99,
        n_step=3,
        buffer_size=500_000,
        alpha=0.5,
        beta=0.4,
        beta_final=0.4,
        priority_eps=0.1,
        learning_starts=20_000,
        batch_size=32,
        train_interval=1,
        target_interval=8192,
        num_atoms=51,
        v_min=-200.0,
        v_max=200.0,
        noisy_sigma0=0.5,
        double_q=True,
        max_grad_norm=0.0,
        env_batch=0,
    ),
    # Hessel et al. (2018), Table 1 (Atari): "every 4 agent steps", "target update 32K frames"
    # (8,000 agent steps), "min history to start learning 80K frames" (20,000 steps).
    "atari": dict(
        num_envs=1,
        max_pool=True,
        reward_scale=1.0,
        clip_reward=1.0,
        learning_rate=6.25e-5,
        adam_eps=1.5e-4,
        gamma=0.99,
        n_step=3,
        buffer_size=1_000_000,
        alpha=0.5,
        beta=0.4,
        beta_final=1.0,
        priority_eps=1e-6,
        learning_starts=20_000,
        batch_size=32,
        train_interval=4,
        target_interval=8_000,
        num_atoms=51,
        v_min=-10.0,
        v_max=10.0,
        noisy_sigma0=0.5,
        double_q=True,
        max_grad_norm=10.0,
        env_batch=0,
    ),
    # What learned fastest per wall-clock second on this project's shared 2-core VM
    # (bench/bench_rainbow.py learn; bench/results/2026-12-02-rainbow-learn.txt): 4.55x the
    # random agent's reward on Airstriker after 1M frames, in 64 minutes. The learner's time is
    # the budget, so: a gradient step of 32 every 8 agent steps (each transition is drawn ~4
    # times, as in the Atari setting), 8 envs (one forward pass acts for all 8), learning from
    # 5,000 steps, a 100k memory, the target refreshed every 2,000 steps (250 gradient steps);
    # 10-step returns and lr 2.5e-4 (Dopamine's C51 rate), where 3 steps and 1e-4 were still
    # below random (181) after 280k frames; rewards x 0.05 (an Airstriker kill is 1) over atoms
    # in [-10, 10]; one torch thread, so that the emulators step on the other core meanwhile.
    "fast": dict(
        num_envs=8,
        max_pool=True,
        reward_scale=0.05,
        clip_reward=0.0,
        learning_rate=2.5e-4,
        adam_eps=1.5e-4,
        gamma=0.99,
        n_step=10,
        buffer_size=100_000,
        alpha=0.5,
        beta=0.4,
        beta_final=1.0,
        priority_eps=0.1,
        learning_starts=5_000,
        batch_size=32,
        train_interval=8,
        target_interval=2_000,
        num_atoms=51,
        v_min=-10.0,
        v_max=10.0,
        noisy_sigma0=0.5,
        double_q=True,
        max_grad_norm=10.0,
        env_batch=0,
        torch_threads=1,
    ),
}


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
    ckpt = _load_tagged(path, "rainbow", "Rainbow", required={"model": dict})
    bad = f"{path!r} is not a fastretro Rainbow checkpoint:"
    head = ckpt["model"].get("advantage.weight_mu")
    if not isinstance(head, torch.Tensor) or head.dim() != 2:
        raise InvalidArgumentError(
            f"{bad} its 'model' has no advantage head ('advantage.weight_mu')"
        )
    # Checkpoints from before the action set was saved have none.
    if not isinstance(ckpt.get("action_set", ""), (str, list, tuple)):
        raise InvalidArgumentError(f"{bad} its 'action_set' is not a name or a list of combos")
    try:
        cfg = config_from_checkpoint(ckpt)
    except TypeError as exc:
        raise InvalidArgumentError(f"{bad} its 'config' is not a RainbowConfig's ({exc})") from exc
    if type(cfg.num_atoms) is not int or cfg.num_atoms < 1:
        raise InvalidArgumentError(f"{bad} its 'config' has num_atoms={cfg.num_atoms!r}")
    return ckpt


def config_from_checkpoint(ckpt: dict) -> RainbowConfig:
    """The RainbowConfig saved in a checkpoint."""
    known = {f.name for f in dataclasses.fields(RainbowConfig)}
    return RainbowConfig(**{k: v for k, v in ckpt["config"].items() if k in known})


def _same_actions(a, b) -> bool:
    """Whether two action sets are the same (a name, or combos as strings or lists)."""

    def norm(x):
        return x if isinstance(x, str) else [c if isinstance(c, str) else list(c) for c in x]

    return norm(a) == norm(b)


def _check_compatible(ckpt: dict, actions, n_actions: int, path: str) -> None:
    have = ckpt.get("action_set")
    if have is not None and not _same_actions(have, actions):
        raise InvalidArgumentError(
            f"{path!r} was trained with the action set {have!r}; this run uses {actions!r}: "
            "use the same action set (actions=...)"
        )
    head = ckpt["model"]["advantage.weight_mu"].shape[0] // config_from_checkpoint(ckpt).num_atoms
    if head != n_actions:
        raise InvalidArgumentError(
            f"{path!r} was trained with {head} actions; this env has {n_actions}: use the same "
            "action set (actions=...)"
        )


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
    from tqdm import tqdm

    from fastretro.runtime.stats import Stopwatch, available_cores

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
    source = load_checkpoint(init_from) if init_from else None
    watch = watch or Stopwatch()
    on_loop = on_loop or (lambda phase, pools: None)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    torch.set_num_threads(cfg.torch_threads or available_cores())
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    pool = make_pool(cfg)
    try:
        n_actions = int(pool.single_action_space.n)
        actions_now = action_set(cfg)
        if source is not None:
            _check_compatible(source, actions_now, n_actions, init_from)
        model = RainbowNet((STACK, *HW), n_actions, cfg.num_atoms, cfg.noisy_sigma0).to(device)
        target = RainbowNet((STACK, *HW), n_actions, cfg.num_atoms, cfg.noisy_sigma0).to(device)
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
        support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms, device=device)
        replay = PrioritizedReplay(
            cfg.buffer_size,
            cfg.num_envs,
            HW,
            STACK,
            cfg.n_step,
            cfg.gamma,
            cfg.alpha,
            cfg.priority_eps,
        )

        n = cfg.num_envs
        ep_reward = np.zeros(n)
        ep_length = np.zeros(n, np.int64)
        last_actions = np.zeros(n, np.int64)
        recent: list[float] = []
        episodes = 0
        frames = start_frames
        steps = start_frames // cfg.frameskip
        total_steps = max(1, cfg.total_frames // cfg.frameskip)
        run_start_steps = steps
        updates, updates_due = 0, 0.0
        last_target = steps
        runlog = RunLog(run_dir, resume=resume is not None)
        ckpt_dir = os.path.join(run_dir, "checkpoints")
        last_ckpt, last_log = start_frames, start_frames
        start = time.perf_counter()
        bar = tqdm(
            total=max(0, cfg.total_frames - start_frames),
            unit="frame",
            unit_scale=True,
            disable=not progress,
            desc="rainbow",
        )

        def act(obs: np.ndarray) -> np.ndarray:
            with watch("inference"):
                with torch.inference_mode():
                    model.reset_noise()
                    q = q_values(model, torch.from_numpy(obs).to(device), support)
                    return q.argmax(1).cpu().numpy()

        def learn(k: int) -> None:
            nonlocal updates
            beta = cfg.beta + (cfg.beta_final - cfg.beta) * min(1.0, steps / total_steps)
            for _ in range(k):
                with watch("sampling"):
                    batch = replay.sample(cfg.batch_size, beta, rng)
                with watch("learning"):
                    out = _learn_step(cfg, model, target, optimizer, support, batch, device)
                    replay.update_priorities(batch["slots"], out.pop("priority"))
                for key, v in out.items():
                    sums[key] = sums.get(key, 0.0) + v
                updates += 1

        def record(ids, actions, rewards, terminated, truncated, obs, final_obs) -> None:
            nonlocal episodes
            done = terminated | truncated
            learn_rewards = rewards * cfg.reward_scale
            if cfg.clip_reward:
                learn_rewards = np.clip(learn_rewards, -cfg.clip_reward, cfg.clip_reward)
            final = None
            if done.any():
                final = np.array(obs)
                for j in np.flatnonzero(done):
                    final[j] = final_obs[j]
            replay.append(ids, actions, learn_rewards, terminated, truncated, obs, final)
            ep_reward[ids] += rewards
            ep_length[ids] += 1
            for j in np.flatnonzero(done):
                i = ids[j]
                runlog.episode(float(ep_reward[i]), int(ep_length[i]), frames)
                recent.append(float(ep_reward[i]))
                episodes += 1
                ep_reward[i], ep_length[i] = 0.0, 0

        def log_row() -> None:
            elapsed = time.perf_counter() - start
            row = {
                "frames": frames,
                "episodes": episodes,
                "episode/reward_mean100": float(np.mean(recent[-100:])) if recent else 0.0,
                "time/seconds": elapsed,
                "time/frames_per_s": (frames - start_frames) / elapsed,
                "time/updates_per_s": updates / elapsed,
                "updates": updates,
                "replay/transitions": min(len(replay), replay.ring * n),
                "beta": cfg.beta + (cfg.beta_final - cfg.beta) * min(1.0, steps / total_steps),
                # Means over the gradient steps since the last row.
                **{k: sums.get(k, math.nan) / max(1, updates - logged[0]) for k in _STATS},
            }
            runlog.update(row)
            sums.clear()
            logged[0] = updates
            bar.set_postfix(reward=f"{row['episode/reward_mean100']:.1f}", eps=episodes)

        sums: dict[str, float] = {}
        logged = [0]
        ids = np.arange(n)
        seed = cfg.seed + start_frames
        if cfg.env_batch:
            pool.async_reset(seed=seed)
            started = np.zeros(n, bool)
            obs = None
        else:
            obs, _ = pool.reset(seed=seed)
            obs = np.array(obs)
            replay.begin(ids, obs)
        on_loop("start", [pool])
        try:
            while frames < cfg.total_frames:
                if max_seconds is not None and time.perf_counter() - start > max_seconds:
                    break
                if obs is not None:
                    last_actions[ids] = actions = act(obs)
                    if cfg.env_batch:
                        pool.send(actions, ids)
                    else:
                        pool.step_async(actions)
                # The emulators step while the learner trains on what the memory holds.
                k, updates_due = _due(cfg, len(replay), updates_due)
                learn(k)
                if cfg.env_batch:
                    # The first envs to finish: stepped, or reset (the first time round).
                    obs, rewards, terminated, truncated, infos = pool.recv()
                    ids = infos["env_id"]
                    fresh = ~started[ids]
                    if fresh.any():
                        replay.begin(ids[fresh], obs[fresh])
                        started[ids[fresh]] = True
                        if fresh.all():
                            continue
                        keep = ~fresh
                        stepped = ids[keep]
                        rewards, terminated, truncated = (
                            rewards[keep],
                            terminated[keep],
                            truncated[keep],
                        )
                        infos = {k: v[keep] for k, v in infos.items() if k in ("final_obs",)}
                        obs_stepped = obs[keep]
                    else:
                        stepped, obs_stepped = ids, obs
                else:
                    obs, rewards, terminated, truncated, infos = pool.step_wait()
                    obs = np.array(obs)
                    stepped, obs_stepped = ids, obs
                taken = len(stepped)
                steps += taken
                frames += taken * cfg.frameskip
                record(
                    stepped,
                    last_actions[stepped],
                    rewards,
                    terminated,
                    truncated,
                    obs_stepped,
                    infos.get("final_obs"),
                )
                if len(replay) >= cfg.learning_starts:
                    updates_due += taken / cfg.train_interval
                if steps - last_target >= cfg.target_interval:
                    target.load_state_dict(model.state_dict())
                    last_target = steps
                bar.update(taken * cfg.frameskip)
                if frames - last_log >= cfg.log_every:
                    last_log = frames
                    log_row()
                if cfg.checkpoint_every and frames - last_ckpt >= cfg.checkpoint_every:
                    save_checkpoint(
                        os.path.join(ckpt_dir, f"ckpt_{frames}.pt"),
                        model,
                        target,
                        optimizer,
                        cfg,
                        frames,
                    )
                    last_ckpt = frames
            on_loop("end", [pool])
        finally:
            bar.close()
            path = os.path.join(ckpt_dir, "last.pt")
            save_checkpoint(path, model, target, optimizer, cfg, frames)
            runlog.close()
        elapsed = time.perf_counter() - start
        return {
            "frames": frames,
            "episodes": episodes,
            "reward_mean100": float(np.mean(recent[-100:])) if recent else None,
            "seconds": round(elapsed, 3),
            "frames_per_s": round((frames - start_frames) / max(elapsed, 1e-9), 1),
            "updates": updates,
            "steps": steps - run_start_steps,
            "checkpoint": path,
        }
    finally:
        pool.close()


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
    if game is not None:
        cfg.game, cfg.state = game, state
    elif state is not None:
        cfg.state = state
    cfg.num_envs, cfg.env_batch = 1, 0
    extra = {"record": record} if record else {}
    # The checkpoint's action set, whatever "auto" would mean for another game.
    cfg.actions = ckpt.get("action_set", action_set(cfg))
    pool = make_pool(cfg, **extra)
    try:
        n_actions = int(pool.single_action_space.n)
        _check_compatible(ckpt, cfg.actions, n_actions, checkpoint)
        model = _model_from(ckpt, cfg, n_actions, checkpoint)
        model.train(not greedy)
        support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms)
        torch.manual_seed(seed)
        obs, _ = pool.reset(seed=seed)
        rewards, total = [], 0.0
        while len(rewards) < episodes:
            with torch.inference_mode():
                if not greedy:
                    model.reset_noise()
                action = q_values(model, torch.from_numpy(np.array(obs)), support).argmax(1)
            obs, r, term, trunc, _ = pool.step(action.numpy())
            total += float(r[0])
            if term[0] or trunc[0]:
                rewards.append(total)
                total = 0.0
        return rewards
    finally:
        pool.close()


class _EvalAgent:
    """``act(obs) -> actions`` for ``fastretro eval``: the argmax of the expected returns."""

    def __init__(self, model: RainbowNet, support: torch.Tensor, greedy: bool) -> None:
        self.model, self.support, self.greedy = model, support, greedy

    def act(self, observations: np.ndarray) -> np.ndarray:
        """One action per env for a batch of (N, 4, 84, 84) uint8 observations."""
        with torch.inference_mode():
            if not self.greedy:
                self.model.reset_noise()
            obs = torch.from_numpy(np.array(observations))  # a copy: the pool's is read-only
            return q_values(self.model, obs, self.support).argmax(1).numpy()


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

    def factory(observation_space, action_space) -> _EvalAgent:
        shape = tuple(observation_space.shape)
        if shape != (STACK, *HW):
            raise InvalidArgumentError(
                f"Expected observations of shape {(STACK, *HW)}, got {shape}: use the "
                "factory's env_options"
            )
        n = int(action_space.nvec.flat[0]) if hasattr(action_space, "nvec") else action_space.n
        _check_compatible(ckpt, actions, int(n), checkpoint)
        model = _model_from(ckpt, cfg, int(n), checkpoint)
        model.train(not greedy)
        support = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_atoms)
        return _EvalAgent(model, support, greedy)

    factory.env_options = dict(
        actions=actions,
        grayscale=True,
        resize=HW,
        max_pool=cfg.max_pool,
        frame_stack=STACK,
        channels_first=True,
    )
    return factory


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``fastretro rainbow``: train Rainbow on the pool."""
    parser = argparse.ArgumentParser(
        prog="fastretro rainbow",
        description="Train Rainbow DQN on the pool (in-worker 84x84 gray, stack 4). Writes "
        "RUN_DIR/monitor.csv, progress.csv, tb/ and checkpoints/last.pt.",
    )
    parser.add_argument("--run-dir", default="runs/rainbow", help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="hyper-parameter preset")
    parser.add_argument("--init-from", metavar="CKPT", help="fine-tune from these weights")
    parser.add_argument("--resume", metavar="CKPT", help="continue the run of this checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    docs = _field_docs()
    for f in dataclasses.fields(RainbowConfig):
        flag = "--" + f.name.replace("_", "-")
        doc = " ".join(docs.get(f.name, "").split()).replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=doc)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=None, help=doc)
    args = parser.parse_args(argv)

    values = dict(PRESETS[args.preset]) if args.preset else {}
    for f in dataclasses.fields(RainbowConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    if "game" in values:
        from fastretro.runtime.games import game_id

        values["game"] = game_id(values["game"])  # "Pong" names Pong-Atari2600-v0
    try:
        cfg = RainbowConfig(**values)
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
            f"{summary['updates']:,} gradient steps, mean reward (last 100) "
            f"{summary['reward_mean100']}; checkpoint {summary['checkpoint']}"
        )
    return 0


def _field_docs() -> dict[str, str]:
    """Each config field's docstring (the string under it in the class body), for --help."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    try:
        body = ast.parse(inspect.getsource(RainbowConfig)).body[0].body
    except (OSError, TypeError):  # no source (a frozen build): flags without help
        return docs
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            if isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                docs[node.target.id] = after.value.value
    return docs
