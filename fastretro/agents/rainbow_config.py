"""Rainbow's config and presets: everything a run needs, and the settings worth starting from.

Presets (:data:`PRESETS`; ``fastretro rainbow --preset NAME``, flags override):

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
"""

from __future__ import annotations

from dataclasses import dataclass

from fastretro import DEFAULT_GAME
from fastretro.errors import InvalidArgumentError

__all__ = ["HW", "PRESETS", "STACK", "RainbowConfig"]

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
        from fastretro.agents.harness import check_fields

        ints = ("num_envs", "total_frames", "frameskip", "max_episode_steps", "n_step")
        ints += ("buffer_size", "batch_size", "train_interval", "target_interval", "log_every")
        counts = ("learning_starts", "env_batch", "torch_threads", "checkpoint_every")
        check_fields(self, ints=ints, counts=counts)
        if not isinstance(self.num_atoms, int) or self.num_atoms < 2:
            raise InvalidArgumentError(
                f"Expected num_atoms to be an int >= 2, got {self.num_atoms!r}"
            )
        check_fields(
            self,
            positive=("learning_rate", "adam_eps", "priority_eps", "reward_scale"),
            unit=("gamma", "alpha", "beta", "beta_final", "sticky_prob"),
            nonnegative=("clip_reward", "max_grad_norm", "noisy_sigma0"),
        )
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
