"""Stage 4's C: the linear controller ``action = argmax(W [z, h] + b)`` and its checkpoint.

:class:`Policies` runs V, M and one controller per env, batched over whichever envs a pool's
``recv`` returns; ``controller.pt`` holds the evolved controller and the CMA-ES state as
tensors and plain data (:mod:`fastretro.agents.cma_state`), opened without running code.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from fastretro.agents.checkpoints import load_checkpoint as _load_tagged
from fastretro.agents.checkpoints import save_checkpoint as _save_tagged
from fastretro.agents.cma_state import es_state
from fastretro.agents.common import torch
from fastretro.agents.harness import same_actions
from fastretro.agents.world_models.config import CONTROLLER_TAG, WorldModelsConfig, jsonable
from fastretro.agents.world_models.mdn_rnn import MDNRNN, load_mdn
from fastretro.agents.world_models.vae import ConvVAE, load_vae
from fastretro.errors import InvalidArgumentError


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


class Policies:
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


def load_world_model(
    run_dir: str, cfg: WorldModelsConfig, n_actions: int
) -> tuple[ConvVAE, MDNRNN]:
    """The run folder's V and M, checked against each other and this run's settings.

    Raises:
        InvalidArgumentError: a missing or mismatched ``vae.pt`` or ``mdn.pt``.
    """
    vae, _ = load_vae(os.path.join(run_dir, "vae.pt"), cfg)
    mdn, _ = load_mdn(os.path.join(run_dir, "mdn.pt"), cfg, n_actions)
    if mdn.z_size != vae.z_size:
        raise InvalidArgumentError(
            f"The MDN-RNN of {run_dir!r} takes {mdn.z_size}-d latents; its VAE makes "
            f"{vae.z_size}-d ones: train the MDN-RNN again on this VAE"
        )
    return vae, mdn


def save_controller(path, cfg, n_actions, frames, es, generation, best, mean_params, history):
    """``controller.pt``: the best and mean controllers, the CMA-ES state and the history."""
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
    if not same_actions(ckpt["action_set"], cfg.resolved_actions()):
        raise InvalidArgumentError(
            f"{path!r} was evolved for the action set {jsonable(ckpt['action_set'])!r} "
            f"({int(ckpt['n_actions'])} actions), not {jsonable(cfg.resolved_actions())!r}: "
            "use the run's action set"
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
