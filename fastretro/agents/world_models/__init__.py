"""World Models (Ha & Schmidhuber, 2018) on the pool: collect, then V, M and C, one module each.

The first write-up of the 2018 Retro Contest applied World Models to Sonic. Four stages, each a
subcommand of ``fastretro world-models`` and a function exported here, all working in one run
folder:

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

One module per stage, each importing only the modules listed before it (none imports this
``__init__``): ``config`` (the settings every stage shares, the pool they describe),
``runfolder`` (config.json, the summaries, the CSV and TensorBoard scalars), ``shards`` (the
shard format), ``vae`` (V), ``mdn_rnn`` (M), ``controller`` (C and its checkpoint),
``evolution`` (CMA-ES on the pool), ``agent`` (play, the eval agent), ``rollouts`` (collect,
listed late because it can act with an evolved controller) and ``cli``. From ``vae`` on, they
read as the paper does: V, M, C. What every agent needs comes from
:mod:`fastretro.agents.harness`: the settings flags, the config checks, the action count, the
play loop and the ``fastretro eval`` factory.

The run folder holds ``config.json`` (the settings of the last stage run), ``shards/``,
``vae.pt``, ``mdn.pt``, ``controller.pt`` (checkpoints written atomically and tagged per model;
tensors and plain data, the CMA-ES state included, opened without running code: a run folder
from a stranger is safe to play),
``latents.npz`` (the shards encoded by the VAE, for M), one ``<stage>.json`` summary per stage
(wall-clock, frames, and the pool's frames/s for ``collect`` and ``evolve``), ``vae.csv``,
``mdn.csv``, ``evolution.csv``, TensorBoard scalars in ``tb/`` (when tensorboard is installed)
and the pictures ``reconstructions.png``, ``dream.gif`` and ``evolution.png``.
"""

from fastretro.agents.common import torch
from fastretro.agents.world_models.agent import (
    WorldModelsAgent,
    make_eval_agent,
    play,
    run_episodes,
)
from fastretro.agents.world_models.cli import describe_summary, main
from fastretro.agents.world_models.config import (
    CONTROLLER_TAG,
    MDN_TAG,
    MIN_FRAME_SIZE,
    PRESETS,
    VAE_TAG,
    WorldModelsConfig,
    make_pool,
    resolve_config,
)
from fastretro.agents.world_models.controller import (
    Policies,
    controller_actions,
    controller_size,
    load_controller,
    load_world_model,
    upgrade_controller,
)
from fastretro.agents.world_models.evolution import Evaluator, evolve, plot_evolution
from fastretro.agents.world_models.mdn_rnn import (
    MDNRNN,
    encode_shards,
    load_mdn,
    mdn_nll,
    sample_mixture,
    train_mdn,
    write_dream,
)
from fastretro.agents.world_models.rollouts import collect
from fastretro.agents.world_models.shards import load_shards, shard_paths
from fastretro.agents.world_models.vae import ConvVAE, load_vae, train_vae, vae_loss

__all__ = [
    "CONTROLLER_TAG",
    "MDNRNN",
    "MDN_TAG",
    "MIN_FRAME_SIZE",
    "PRESETS",
    "VAE_TAG",
    "ConvVAE",
    "Evaluator",
    "Policies",
    "WorldModelsAgent",
    "WorldModelsConfig",
    "collect",
    "controller_actions",
    "controller_size",
    "describe_summary",
    "encode_shards",
    "evolve",
    "load_controller",
    "load_mdn",
    "load_shards",
    "load_vae",
    "load_world_model",
    "main",
    "make_eval_agent",
    "make_pool",
    "mdn_nll",
    "play",
    "plot_evolution",
    "resolve_config",
    "run_episodes",
    "sample_mixture",
    "shard_paths",
    "torch",
    "train_mdn",
    "train_vae",
    "upgrade_controller",
    "vae_loss",
    "write_dream",
]
