"""Playing: the evolved controller with V and M on an env, and ``fastretro eval``'s agent."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from fastretro.agents import harness
from fastretro.agents.common import torch
from fastretro.agents.world_models.config import (
    WorldModelsConfig,
    jsonable,
    make_pool,
    resolve_config,
)
from fastretro.agents.world_models.controller import Policies, load_controller, load_world_model
from fastretro.agents.world_models.mdn_rnn import MDNRNN
from fastretro.agents.world_models.vae import ConvVAE
from fastretro.errors import InvalidArgumentError


class WorldModelsAgent:
    """V, M and one evolved controller acting on a batch of envs (lock-step).

    ``act(obs)`` takes uint8 frames (N, S, S, 3) and returns (N,) action indices;
    ``observe(rewards, terminated, truncated)`` resets the LSTM of the envs whose episode
    ended (with same-step autoreset their next frame is a new episode's first).
    """

    def __init__(self, vae: ConvVAE, mdn: MDNRNN, params: np.ndarray) -> None:
        self.vae, self.mdn = vae, mdn
        self.params = torch.from_numpy(np.asarray(params, np.float32))
        self._policies: Policies | None = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        """One action per env."""
        n = len(obs)
        if self._policies is None or self._policies.h.shape[0] != n:
            self._policies = Policies(self.vae, self.mdn, n)
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
    ``observe``), as for ``fastretro eval``; it is called once the pool is up. Each env plays
    its share of the episodes (:func:`fastretro.agents.harness.play_episodes`); the list is in
    env order. ``record``: a folder for one ``.bk2`` movie per episode.
    """
    if episodes < 1:
        raise InvalidArgumentError(f"Expected episodes >= 1, got {episodes}")
    num_envs = min(num_envs, episodes)
    extra = {"record": record} if record else {}
    pool = make_pool(cfg, num_envs=num_envs, autoreset_mode="same_step", **extra)
    try:
        # The batched action space, as fastretro eval gives its factories.
        agent = factory(pool.single_observation_space, pool.action_space)
        return harness.play_episodes(pool, agent, episodes, seed)
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

    ``factory(observation_space, action_space)`` returns an agent (``act``, ``observe``;
    :func:`fastretro.agents.harness.eval_factory`) acting through a :class:`WorldModelsAgent`,
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

    def build(observation_space, action_space) -> WorldModelsAgent:
        shape = tuple(observation_space.shape[-3:])
        if shape != (size, size, 3):
            raise InvalidArgumentError(
                f"The VAE of {run_dir!r} takes {size}x{size}x3 frames, got observations of "
                f"shape {tuple(observation_space.shape)}: pass the env_options resize="
                f"({size}, {size}), grayscale=False"
            )
        n = harness.n_actions_of(action_space)
        if n != n_actions:
            raise InvalidArgumentError(
                f"The controller of {run_dir!r} was evolved for {n_actions} actions "
                f"({jsonable(ckpt['action_set'])!r}), got an env with {n}: pass the "
                "env_options actions"
            )
        vae, mdn = load_world_model(run_dir, cfg, n_actions)
        torch.set_num_threads(cfg.torch_threads)
        return WorldModelsAgent(vae, mdn, params)

    options = {"resize": (size, size), "actions": cfg.resolved_actions()}
    return harness.eval_factory(build, options)
