"""World Models' settings, shared by every stage, and the pool they describe."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from fastretro import DEFAULT_GAME
from fastretro.agents.common import auto_actions
from fastretro.agents.harness import check_fields, config_from
from fastretro.errors import InvalidArgumentError

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
        ints = ("frameskip", "max_episode_steps", "num_envs", "collect_episodes", "shard_steps")
        ints += ("z_size", "vae_width", "vae_batch_size")
        ints += ("rnn_hidden", "mdn_gaussians", "mdn_seq_len", "mdn_batch_size", "dream_steps")
        ints += ("popsize", "episodes_per_candidate", "batch_size", "torch_threads")
        counts = ("vae_epochs", "vae_max_frames", "mdn_epochs", "generations")
        check_fields(self, ints=ints, counts=counts)
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
        check_fields(
            self,
            positive=("vae_lr", "mdn_lr", "sigma0", "dream_temperature", "mdn_grad_clip"),
            nonnegative=("evolve_seconds",),
        )
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
    cfg = config_from(WorldModelsConfig, values, strict="World Models")
    cfg.check()
    return cfg


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


def training_cores() -> int:
    """The threads V and M train with: every core (the emulators are idle then)."""
    # Imported here: fastretro.runtime pulls in gymnasium, which a stage needs only once it runs.
    from fastretro.runtime.stats import available_cores

    return available_cores()


def jsonable(actions):
    """An action set as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(actions))


def pool_description(cfg: WorldModelsConfig, num_envs: int, batch_size: int | None = None):
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
