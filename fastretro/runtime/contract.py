"""The pool contract, written once: call states, argument checks, seeds, closing and infos.

Every transport of a vectorized pool (the process pool, :mod:`fastretro.runtime.pool`, its
in-process variant with worker threads, :mod:`fastretro.runtime.threads`, and the Ray shards,
:mod:`fastretro.integrations.ray`) keeps the same promises to its caller, and this module is
where they are kept, so that the transports only move data:

- :class:`CallState`, gymnasium ``AsyncVectorEnv``'s explicit state machine (IDLE,
  WAITING_RESET, WAITING_STEP) with the checks every call makes: the pool is open (or says why
  it closed), no call is pending (or the pending one is the one being collected), the call fits
  the pool's mode (lock-step or async), and every env it steps has been reset once.
- :func:`reset_mask`, :func:`env_seeds`, :func:`shard_seeds` and :func:`action_checks`, the
  argument checks and the seed splitting (env ``i`` of ``seed=s`` gets ``s + i``, whichever
  shard or worker runs it).
- :class:`InfoRows` (gymnasium's dict of arrays, each with its ``_name`` mask, and
  ``final_obs``/``final_info`` where episodes ended), :data:`RESTARTED` and
  :func:`add_restarted`, the name of the info that marks envs whose worker (or shard) was
  replaced.

The messages are part of the contract: tests pin them (``tests/runtime/test_contract.py`` runs the
same tests on every transport).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np

from fastretro.config import EnvConfig
from fastretro.errors import ClosedError, InvalidArgumentError, StateMachineError
from fastretro.runtime.protocol import ActionMode
from fastretro.runtime.staging import ActionStaging

__all__ = [
    "RESTARTED",
    "CallState",
    "InfoRows",
    "State",
    "action_checks",
    "add_restarted",
    "protocol_infos",
    "env_seeds",
    "reset_mask",
    "shard_seeds",
]

#: The info (and its ``_`` mask) that marks envs whose worker or shard was replaced: their
#: episode was cut short (``truncated``) and the observation is the new episode's first.
RESTARTED = "worker_restarted"


class State(enum.Enum):
    """Where a lock-step pool is in its call protocol."""

    IDLE = "idle"
    WAITING_RESET = "reset"
    WAITING_STEP = "step"


class CallState:
    """The call-state machine of one pool and the checks each call makes against it.

    A pool starts closed (so that a failed construction leaves nothing to close) and calls
    :meth:`open` once it is ready. Each ``*_async`` checks :meth:`check_idle` and then calls
    :meth:`begin`; each ``*_wait`` checks :meth:`check_waiting` and then calls :meth:`end`.

    Args:
        num_envs: envs of the pool.
        batch_size: async mode's batch (``None``: lock-step).
        seed: the config's seed, used by the first reset that gives none.
        autoreset_disabled: whether an env whose episode ended must be reset before the next
            step (``autoreset_mode="disabled"``).
    """

    def __init__(
        self,
        num_envs: int,
        batch_size: int | None = None,
        seed: int | None = None,
        autoreset_disabled: bool = False,
    ) -> None:
        self.num_envs = num_envs
        self.batch_size = batch_size
        #: The lock-step call pending, if any.
        self.state = State.IDLE
        #: Whether the pool is closed (it is, until :meth:`open`).
        self.closed = True
        #: Why the pool closed itself (one line), if it did.
        self.failure: str | None = None
        self._seed = seed
        # Per env: not reset (nor restored) since the pool started, so not in an episode.
        self._unreset = np.ones(num_envs, dtype=bool)
        #: Whether every env has been reset once (the fast step's check, without a numpy call).
        self.all_reset = False
        self.autoreset_disabled = autoreset_disabled
        #: Per env: its episode ended and, autoreset being disabled, it awaits a reset.
        self.needs_reset = np.zeros(num_envs, dtype=bool)

    # -- life -------------------------------------------------------------------------------

    def open(self) -> None:
        """The pool is ready for calls."""
        self.closed = False

    def close(self) -> None:
        """The pool is closed: every later call raises :class:`ClosedError`."""
        self.closed = True
        self.state = State.IDLE

    def fail(self, exc: BaseException) -> None:
        """Keep the reason the pool is about to close itself, for the next call's error."""
        self.failure = f"{type(exc).__name__}: {exc}".splitlines()[0]

    def begin(self, state: State) -> None:
        """A lock-step call was sent; its ``*_wait`` collects it."""
        self.state = state

    def end(self) -> None:
        """The pending call was collected."""
        self.state = State.IDLE

    # -- checks -----------------------------------------------------------------------------

    def check_open(self, call: str) -> None:
        """Raise :class:`ClosedError` once the pool is closed (saying why, after a failure)."""
        if self.closed:
            why = f" after a failure ({self.failure})" if self.failure else ""
            raise ClosedError(f"Cannot call {call}: the pool is closed{why}")

    def check_idle(self, call: str) -> None:
        """Raise unless the pool is open and no lock-step call is pending."""
        self.check_open(call)
        if self.state is not State.IDLE:
            pending = f"{self.state.value}_wait"
            raise StateMachineError(
                f"Cannot call {call} while a {self.state.value} is pending: call {pending} first"
            )

    def check_waiting(self, state: State, call: str, sender: str) -> None:
        """Raise unless the pool is open and ``sender`` left ``state`` pending."""
        self.check_open(call)
        if self.state is not state:
            raise StateMachineError(f"Cannot call {call} without a pending {sender}")

    def check_lock_step(self, call: str, instead: str = "async_reset, send and recv") -> None:
        """Raise if the pool is in async mode (``batch_size``)."""
        if self.batch_size is not None:
            raise StateMachineError(
                f"Cannot call {call}: this pool is in async mode (batch_size={self.batch_size}); "
                f"use {instead}"
            )

    def check_async(self, call: str) -> None:
        """Raise unless the pool is open and in async mode."""
        self.check_open(call)
        if self.batch_size is None:
            raise StateMachineError(
                f"Cannot call {call}: this pool is in lock-step mode; create it with "
                "batch_size=M for send/recv"
            )

    def check_none_running(self, call: str, running: Sequence[int], what: str = "envs") -> None:
        """Raise if async calls left ``running`` (envs or shards) to be received."""
        if len(running):
            raise StateMachineError(
                f"Cannot call {call} while {what} {list(running)} are running: recv them first"
            )

    # -- episodes ---------------------------------------------------------------------------

    def mark_reset(self, mask: np.ndarray | None) -> None:
        """The envs of ``mask`` (None: all) started an episode (a reset, or a restore)."""
        if mask is None:
            self._unreset[:] = False
            self.needs_reset[:] = False
        else:
            self._unreset[mask] = False
            self.needs_reset[mask] = False
        self.all_reset = not self._unreset.any()

    def episodes_ended(self, ended: np.ndarray) -> None:
        """The envs of ``ended`` (bool per env) ended an episode in a lock-step step."""
        if self.autoreset_disabled:
            self.needs_reset |= ended

    @property
    def reset_due(self) -> bool:
        """Whether a lock-step step must wait for a reset (see :meth:`check_no_reset_due`)."""
        return self.autoreset_disabled and bool(self.needs_reset.any())

    def check_no_reset_due(self) -> None:
        """Raise if autoreset is disabled and an env's episode ended without a reset since."""
        if self.reset_due:
            done = np.flatnonzero(self.needs_reset).tolist()
            raise StateMachineError(
                f"Envs {done} ended their episode and autoreset is DISABLED: reset them with "
                "reset(options={'reset_mask': mask}) before stepping"
            )

    def check_reset_once(self, ids: np.ndarray | None, call: str, reset: str) -> None:
        """Raise if an env of ``ids`` (None: all) has never been reset: it has no episode."""
        if self.all_reset:
            return
        unreset = np.flatnonzero(self._unreset) if ids is None else ids[self._unreset[ids]]
        if len(unreset) == 0:
            return
        which = (
            "no env has been reset yet"
            if self._unreset.all()
            else f"envs {sorted(unreset.tolist())} have not been reset yet"
        )
        raise StateMachineError(f"Cannot call {call} before {reset}: {which}; call {reset} first")

    def seeds(self, seed: int | Sequence[int] | None) -> np.ndarray:
        """Each env's seed for a reset (see :func:`env_seeds`); the config's seed, once."""
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        return env_seeds(seed, self.num_envs)


def reset_mask(options: dict | None, num_envs: int) -> np.ndarray:
    """``options["reset_mask"]``, checked: a bool array of shape ``(num_envs,)`` (default: all).

    Raises:
        InvalidArgumentError: for any other value, or a mask that selects no env.
    """
    if options is None or "reset_mask" not in options:
        return np.ones(num_envs, dtype=bool)
    mask = options["reset_mask"]
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (num_envs,):
        got = (
            f"{mask.dtype} array of shape {mask.shape}"
            if isinstance(mask, np.ndarray)
            else type(mask).__name__
        )
        raise InvalidArgumentError(
            f"Expected options['reset_mask'] to be a bool array of shape ({num_envs},), got {got}"
        )
    if not mask.any():
        raise InvalidArgumentError("Expected options['reset_mask'] to select at least one env")
    return mask


def env_seeds(seed: int | Sequence[int] | None, num_envs: int) -> np.ndarray:
    """Each env's seed, int64 ``(num_envs,)``: ``seed + i`` for an int, -1 (unseeded) for None.

    Raises:
        InvalidArgumentError: for a negative seed, or a list that is not one int per env.
    """
    if seed is None:
        return np.full(num_envs, -1, dtype=np.int64)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        if seed < 0:
            raise InvalidArgumentError(f"Expected seed >= 0, got {seed}")
        return np.arange(num_envs, dtype=np.int64) + int(seed)
    seeds = list(seed) if isinstance(seed, (list, tuple, np.ndarray)) else None
    if seeds is None or len(seeds) != num_envs:
        raise InvalidArgumentError(
            f"Expected seed to be None, an int or a list of num_envs={num_envs} ints, got {seed!r}"
        )
    out = np.asarray(seeds, dtype=np.int64)
    if (out < 0).any():
        raise InvalidArgumentError(f"Expected seeds >= 0, got {seeds}")
    return out


def shard_seeds(seeds: np.ndarray, shards: Sequence[tuple[int, int]]) -> list[list[int] | None]:
    """The ``seed`` argument of each shard ``(first env, end)``'s own reset: its envs' seeds."""
    return [None if (seeds[a:b] < 0).all() else seeds[a:b].tolist() for a, b in shards]


def action_checks(space: gymnasium.Space, num_envs: int, rows_name: str) -> ActionStaging:
    """The pool's action checks (``.check(actions, rows)``) for envs of ``space``.

    For a transport that forwards actions rather than staging them: its caller gets the same
    :class:`~fastretro.errors.ActionError` as from the process pool, before anything is sent.
    """
    if isinstance(space, gymnasium.spaces.MultiBinary):
        mode, sizes = ActionMode.BITS, (2,) * int(np.prod(space.shape))
    elif isinstance(space, gymnasium.spaces.Discrete):
        mode, sizes = ActionMode.INDEX, (int(space.n),)
    elif isinstance(space, gymnasium.spaces.MultiDiscrete):
        mode, sizes = ActionMode.GROUPS, tuple(int(k) for k in space.nvec)
    else:
        raise InvalidArgumentError(f"Expected a pool's action space, got {space}")
    return ActionStaging(num_envs, ("",) * len(sizes), mode, sizes, None, rows_name)


def add_restarted(infos: dict[str, Any], restarted: np.ndarray) -> None:
    """Mark the envs of ``restarted`` (bool per row) in ``infos`` as :data:`RESTARTED`."""
    if RESTARTED in infos:  # a shard's own pool replaced some of its workers
        restarted = restarted | np.asarray(infos[RESTARTED], dtype=bool)
    if restarted.any():
        infos[RESTARTED] = restarted
        infos[f"_{RESTARTED}"] = restarted.copy()


#: Infos the DQN-era protocol adds, and the shared array each comes from.
PROTOCOL_INFOS = {"reward": "raw_rewards", "lives": "lives", "game_over": "game_over"}
#: The same in ``final_info`` (SAME_STEP autoreset): the ended step's values.
FINAL_PROTOCOL_INFOS = {
    "reward": "raw_rewards",
    "lives": "final_lives",
    "game_over": "final_game_over",
}


def protocol_infos(cfg: EnvConfig) -> tuple[str, ...]:
    """The protocol infos a config reports.

    The raw ``reward`` where the reward is changed; ``lives`` and ``game_over`` where a lost
    life ends the episode.
    """
    names = ()
    if (
        cfg.sign_reward
        or cfg.clip_reward is not None
        or cfg.reward_scale != 1.0
        or cfg.allow_backtracking
    ):
        names += ("reward",)
    if cfg.episodic_life:
        names += ("lives", "game_over")
    return names


class InfoRows:
    """How a pool's shared info rows become gymnasium infos: a dict of arrays, ``_name`` masks.

    Args:
        info_names: the columns of the shared ``info`` rows.
        setups: each env's :class:`~fastretro.runtime.games.GameSetup` (which columns it has).
        protocol: the protocol infos reported (:func:`protocol_infos`).
    """

    def __init__(self, info_names: Sequence[str], setups: Sequence[Any], protocol: tuple) -> None:
        self.names = tuple(info_names)
        self.protocol = protocol
        self._env_has = np.array(
            [[v in s.info_names for v in self.names] for s in setups], dtype=bool
        ).reshape(len(setups), len(self.names))

    def read(self, a: dict[str, np.ndarray], rows: Any, done: np.ndarray | None) -> dict[str, Any]:
        """The infos of ``rows`` of the shared arrays ``a``; ``done`` (per row) adds the finals.

        Every array is a copy: the values outlive the step.
        """
        # One copy of each block, handed out as column views.
        has = self._env_has[rows].copy()
        info, final = a["info"][rows].copy(), a["final_info"][rows]
        infos: dict[str, Any] = {}
        for j, name in enumerate(self.names):
            infos[name] = info[:, j]
            infos[f"_{name}"] = has[:, j]
        if self.protocol:
            everyone = np.ones(len(has), dtype=bool)
            for name in self.protocol:
                infos[name] = a[PROTOCOL_INFOS[name]][rows].copy()
                infos[f"_{name}"] = everyone
        if done is not None and done.any():
            final_obs = np.empty(len(done), dtype=object)
            final_info: dict[str, Any] = {}
            all_final_obs = a["final_obs"][rows]
            for i in np.flatnonzero(done):
                final_obs[i] = all_final_obs[i].copy()
            for j, name in enumerate(self.names):
                final_info[name] = final[:, j].copy()
                final_info[f"_{name}"] = has[:, j] & done
            for name in self.protocol:
                final_info[name] = a[FINAL_PROTOCOL_INFOS[name]][rows].copy()
                final_info[f"_{name}"] = done.copy()
            infos["final_obs"] = final_obs
            infos["_final_obs"] = done.copy()
            infos["final_info"] = final_info
            infos["_final_info"] = done.copy()
        return infos
