"""EnvPool's Python face on a :class:`~fastretro.VecRetroEnv`: what ``envpool.make`` returns.

:class:`EnvPoolVecEnv` holds a pool (it does not subclass one) and speaks EnvPool >= 1.0's
gymnasium API: ``reset``/``step`` with an optional ``env_id``, ``async_reset``/``send``/``recv``,
one env's spaces as ``observation_space``/``action_space``, ``config`` and ``spec``, and
EnvPool's ``info`` keys. :func:`fastretro.envpool.make` builds it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode

from fastretro.errors import InvalidArgumentError, StateMachineError
from fastretro.integrations.envpool_compat import make_config_tuple


class EnvSpec:
    """EnvPool's ``EnvSpec``: a task's config and one env's spaces.

    Attributes:
        config: the options as a namedtuple (``spec.config.num_envs``).
        observation_space: one env's observation space, ``Box(0, 255, (stack*C, H, W), uint8)``.
        action_space: one env's action space, ``Discrete(n)``; ``None`` for a stable-retro game
            until a pool has started (its combos are read from the game).
        reward_threshold: ``None``, as for EnvPool's Atari tasks.
    """

    reward_threshold = None

    def __init__(self, config: Mapping[str, Any], observation_space, action_space) -> None:
        self._config_dict = dict(config)
        self.config = make_config_tuple(config)
        self.observation_space = self.gymnasium_observation_space = observation_space
        self.action_space = self.gymnasium_action_space = action_space

    def __repr__(self) -> str:
        return f"EnvSpec({self._config_dict})"


class EnvPoolVecEnv(gymnasium.vector.VectorEnv, gymnasium.Env):
    """A :class:`~fastretro.VecRetroEnv` with EnvPool's gymnasium API.

    As EnvPool's class, it is both a gymnasium ``VectorEnv`` and an ``Env`` (so that
    ``gymnasium.Wrapper`` takes it), and ``observation_space``/``action_space`` are one env's
    spaces (EnvPool's convention), the same as ``single_observation_space``/
    ``single_action_space``. ``num_envs`` and the spaces are plain attributes (CleanRL sets
    them). Observations are new uint8 arrays ``(rows, stack*C, H, W)`` each call (not views
    of shared memory; ``copy=False`` at ``make`` returns views of the pool's buffer instead),
    rewards float32, ``terminated``/``truncated`` bool.

    Lock-step (``batch_size`` 0 or ``num_envs``): ``step`` takes every env's action and
    ``send``/``recv`` split it in two. Async (``batch_size < num_envs``): ``recv`` returns the
    first ``batch_size`` envs to finish, ``info["env_id"]`` says which.

    ``info`` holds EnvPool's keys, one row per returned env: ``env_id`` (int32), ``players``
    (``{"env_id": ...}``), ``lives`` (int32; 0 for games without lives), ``reward`` (float32,
    the raw reward before ``reward_clip``), ``terminated`` (int32: the game itself is over, as
    opposed to a lost life under ``episodic_life``) and ``elapsed_step`` (int32, steps since
    the game's own reset: a life lost under ``episodic_life`` does not restart it).

    Attributes:
        pool: the :class:`~fastretro.VecRetroEnv` underneath.
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, pool, config: Mapping[str, Any], seeds: int | list[int]) -> None:
        self.pool = pool
        self._config = dict(config)
        n = self.num_envs = pool.num_envs
        self.observation_space = self.single_observation_space = pool.single_observation_space
        self.action_space = self.single_action_space = pool.single_action_space
        self.spec = EnvSpec(config, self.observation_space, self.action_space)
        self.render_mode = None
        self.closed = False
        self._async = pool.batch_size is not None
        self._seeds: int | list[int] | None = seeds
        self._episodic = bool(config["episodic_life"])
        self._elapsed = np.zeros(n, np.int32)
        self._done = np.zeros(n, bool)  # the env's last result ended an episode
        self._new_game = np.ones(n, bool)  # its next (auto)reset starts a new game
        self._fresh = np.zeros(n, bool)  # reset sent: its next result is the reset's
        self._pending: str | None = None  # lock-step send/recv: "reset" or "step"
        self._all_env_ids = np.arange(n, dtype=np.int32)

    # -- EnvPool's attributes ----------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The options, EnvPool's names and values (``env.config["num_envs"]``)."""
        return dict(self._config)

    @property
    def all_env_ids(self) -> np.ndarray:
        """``np.arange(num_envs)``, int32."""
        return self._all_env_ids

    @property
    def is_async(self) -> bool:
        """Whether ``recv`` returns a batch smaller than ``num_envs``."""
        return self._async

    def __len__(self) -> int:
        return self.num_envs

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({options})"

    __str__ = __repr__

    # -- reset and step ----------------------------------------------------------------------

    def reset(
        self,
        env_id: np.ndarray | None = None,
        *,
        seed: int | list[int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the envs ``env_id`` (default: all) and return ``(obs, info)`` for them.

        In async mode every env is reset and the first ``batch_size`` are returned (EnvPool
        leaves ``reset`` undefined there; ``async_reset`` + ``recv`` is its loop). ``seed``
        reseeds (unlike EnvPool, which ignores it: its seeds are fixed at ``make``) and
        ``options={"reset_mask": mask}`` picks envs, as gymnasium's ``reset`` does.
        """
        ids = self._reset_ids(env_id, options)
        if seed is not None:
            self._seeds = seed
        if self._async:
            if len(ids) != self.num_envs:
                raise InvalidArgumentError(
                    f"Expected reset of every env in async mode (batch_size="
                    f"{self.pool.batch_size}), got env_id={ids.tolist()}: use async_reset and recv"
                )
            self.async_reset()
            obs, _, _, _, info = self.recv()
            return obs, info
        self._check_no_pending("reset")
        mask = np.zeros(self.num_envs, bool)
        mask[ids] = True
        obs, infos = self.pool.reset(seed=self._take_seeds(), options={"reset_mask": mask})
        self._start_games(mask)
        infos = _rows(infos, ids)
        zeros = np.zeros(len(ids), bool)
        self._advance(ids, zeros, zeros, infos)
        return obs[ids], self._info(ids, infos, np.zeros(len(ids)), zeros, zeros)

    def step(
        self, action: Any, env_id: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step the envs ``env_id`` (default: all) with ``action``; ``send`` then ``recv``.

        Returns:
            ``(obs, reward, terminated, truncated, info)``, one row per env returned.
        """
        self.send(action, env_id)
        return self.recv()

    def async_reset(self) -> None:
        """Reset every env; ``recv`` then returns them (reward 0), as EnvPool's does."""
        if self._async:
            self.pool.async_reset(seed=self._take_seeds())
            self._start_games(np.ones(self.num_envs, bool))
            return
        self._check_no_pending("async_reset")
        self.pool.reset_async(seed=self._take_seeds())
        self._pending = "reset"

    def send(self, action: Any, env_id: np.ndarray | None = None) -> None:
        """Start a step of the envs ``env_id`` (default: all) with ``action``, one per env.

        ``action`` may also be EnvPool's dict form ``{"action": a, "env_id": ids}``.
        """
        if isinstance(action, Mapping):
            env_id = action.get("env_id", env_id)
            action = action["action"]
        action = np.asarray(action)
        if self._async:
            ids = self._all_env_ids if env_id is None else np.asarray(env_id).reshape(-1)
            self.pool.send(action, ids)
            return
        self._check_no_pending("send")
        if env_id is not None:
            ids = np.asarray(env_id).reshape(-1)
            if sorted(ids.tolist()) != list(range(self.num_envs)):
                raise InvalidArgumentError(
                    f"Expected env_id to name every env once in lock-step mode (batch_size 0 or "
                    f"num_envs={self.num_envs}), got {ids.tolist()}"
                )
            ordered = np.empty_like(action)
            ordered[ids] = action
            action = ordered
        self.pool.step_async(action)
        self._pending = "step"

    def recv(
        self, reset: bool = False, return_info: bool = True
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """The results of the envs sent (async mode: the first ``batch_size`` to finish).

        Returns:
            ``(obs, reward, terminated, truncated, info)``; ``(obs, info)`` with ``reset=True``.
        """
        if self._async:
            obs, rewards, term, trunc, infos = self.pool.recv()
            ids = infos["env_id"].astype(np.int32)
        elif self._pending == "reset":
            self._pending = None
            obs, infos = self.pool.reset_wait()
            self._start_games(np.ones(self.num_envs, bool))
            rewards = np.zeros(self.num_envs)
            term, trunc = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
            ids = self._all_env_ids
        elif self._pending == "step":
            self._pending = None
            obs, rewards, term, trunc, infos = self.pool.step_wait()
            ids = self._all_env_ids
        else:
            raise StateMachineError("Cannot call recv without a pending send or async_reset")
        self._advance(ids, term, trunc, infos)
        info = self._info(ids, infos, rewards, term, trunc)
        if reset:
            return obs, info
        return obs, rewards.astype(np.float32), term, trunc, info

    # -- the rest of EnvPool's API -----------------------------------------------------------

    def close(self, **kwargs: Any) -> None:
        """Close the pool (idempotent)."""
        self.closed = True
        self.pool.close()

    def seed(self, seed: int | list[int] | None = None) -> None:
        """Abandoned in EnvPool (seeds are ``make``'s); warns, as EnvPool does."""
        warnings.warn(
            "The `seed` function in envpool is abandoned. You can set seed by "
            "envpool.make(..., seed=seed) instead.",
            stacklevel=2,
        )

    def xla(self) -> None:
        """EnvPool's XLA ops for JAX: not offered."""
        raise InvalidArgumentError(
            "xla() is not supported: fastretro's pool has no XLA custom call; step it from "
            "Python (send/recv)"
        )

    def render(self, *args: Any, **kwargs: Any) -> None:
        """EnvPool's render: not offered."""
        raise InvalidArgumentError("render() is not supported: fastretro's pool does not render")

    # -- internals ---------------------------------------------------------------------------

    def _take_seeds(self) -> int | list[int] | None:
        seeds, self._seeds = self._seeds, None
        return seeds

    def _check_no_pending(self, call: str) -> None:
        if self._pending is not None:
            raise StateMachineError(f"Cannot call {call} while a {self._pending} is pending: recv")

    def _reset_ids(self, env_id: Any, options: dict[str, Any] | None) -> np.ndarray:
        mask = None if options is None else options.get("reset_mask")
        if options is not None and set(options) - {"reset_mask"}:
            raise InvalidArgumentError(
                f"Expected reset options to hold only 'reset_mask', got {sorted(options)}"
            )
        if mask is not None and env_id is not None:
            raise InvalidArgumentError("Pass either env_id or options['reset_mask'], not both")
        if mask is not None:
            mask = np.asarray(mask, bool)
            if mask.shape != (self.num_envs,) or not mask.any():
                raise InvalidArgumentError(
                    f"Expected reset_mask to be a bool array of shape ({self.num_envs},) "
                    f"selecting at least one env, got {mask!r}"
                )
            return np.flatnonzero(mask).astype(np.int32)
        if env_id is None:
            return self._all_env_ids
        ids = np.asarray(env_id, np.int32).reshape(-1)
        if ids.size == 0 or ids.min() < 0 or ids.max() >= self.num_envs:
            raise InvalidArgumentError(
                f"Expected env_id in [0, {self.num_envs}), got {ids.tolist()}"
            )
        return ids

    def _start_games(self, mask: np.ndarray) -> None:
        self._fresh[mask] = True
        self._done[mask] = False

    def _advance(self, ids: np.ndarray, term: np.ndarray, trunc: np.ndarray, infos) -> None:
        # EnvPool's elapsed_step counts from the game's reset: the step after an episode's
        # end is its reset (0 steps) unless a lost life ended it (the game goes on).
        was_done, fresh = self._done[ids], self._fresh[ids]
        elapsed = self._elapsed[ids] + 1
        elapsed[(was_done & self._new_game[ids]) | fresh] = 0
        keep = was_done & ~self._new_game[ids] & ~fresh
        elapsed[keep] = self._elapsed[ids][keep]
        self._elapsed[ids] = elapsed
        self._fresh[ids] = False
        self._done[ids] = term | trunc
        game_over = np.asarray(infos.get("game_over", term), bool)
        self._new_game[ids] = trunc | game_over | (not self._episodic)

    def _info(self, ids, infos, rewards, term, trunc) -> dict[str, Any]:
        rows = len(ids)
        game_over = np.asarray(infos.get("game_over", term), bool)
        lives = infos.get("lives")
        return {
            "env_id": ids.astype(np.int32),
            "players": {"env_id": ids.astype(np.int32)},
            "lives": np.zeros(rows, np.int32) if lives is None else lives.astype(np.int32),
            "reward": np.asarray(infos.get("reward", rewards), np.float32),
            "terminated": game_over.astype(np.int32),
            "elapsed_step": self._elapsed[ids].copy(),
        }


def _rows(infos: dict[str, Any], ids: np.ndarray) -> dict[str, Any]:
    return {k: _rows(v, ids) if isinstance(v, dict) else v[ids] for k, v in infos.items()}
