"""The pool across machines, on Ray: each actor owns a local VecRetroEnv shard.

A shard is an ordinary :class:`~fastretro.VecRetroEnv` (its emulators in subprocesses of the
actor, frames in that machine's shared memory); the driver sends each shard its slice of the
actions and gathers one result per shard per step, so a step costs one object-store round trip
per shard. Actors are placed with Ray's SPREAD strategy, so shards land on different nodes
when there are several.

Start a cluster with ``ray start --head --system-config='{"max_direct_call_object_size":
4194304}'`` on one machine and ``ray start --address=HEAD:6379`` on the others, then
``ray.init(address="auto")`` in the driver. Without a running Ray, :class:`RayVecRetroEnv`
starts a local one with :func:`init`: everything then runs on this machine, which is how the
tests run it.

Why the system config: Ray passes results up to ``max_direct_call_object_size`` (100 KB by
default) inline and larger ones through its object store; a shard's batch of four 84x84x4
observations is 113 KB, and the object-store path cost 5.5 ms per round trip here against 1.7
ms inline (``bench/bench_ray.py``).

Requires Ray: ``pip install "fastretro[ray]"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from fastretro import DEFAULT_GAME
from fastretro.errors import (
    ClosedError,
    InvalidArgumentError,
    StateMachineError,
    WorkerDiedError,
)
from fastretro.spec import per_env

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastretro.distributed needs Ray: pip install "fastretro[ray]"') from exc


#: Ray settings fastretro starts a local Ray with (see the module docstring).
SYSTEM_CONFIG = {"max_direct_call_object_size": 4 << 20}


def init(address: str | None = None, **kwargs: Any) -> None:
    """Start a local Ray tuned for shard results (``address=None``), or connect to a cluster.

    A cluster's settings are its own: start its head with ``--system-config`` as above.
    """
    if address is None:
        kwargs.setdefault("_system_config", SYSTEM_CONFIG)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)


class _Shard:
    """A Ray actor body: one local VecRetroEnv and the calls the driver makes on it."""

    def __init__(self, games, states, scenarios, options: dict) -> None:
        from fastretro import VecRetroEnv

        # copy=True: the result leaves the actor through Ray's object store anyway, and a view
        # of shared memory must not be serialised while the workers write into it.
        self.env = VecRetroEnv(games, len(games), states, scenarios, copy=True, **options)

    def describe(self) -> tuple:
        env = self.env
        return (
            env.single_observation_space,
            env.single_action_space,
            env.metadata["autoreset_mode"],
            getattr(env, "preprocessing", None),
        )

    def reset(self, seeds, options):
        return self.env.reset(seed=seeds, options=options)

    def step(self, actions):
        return self.env.step(actions)

    def close(self) -> None:
        self.env.close()


class RayVecRetroEnv(gymnasium.vector.VectorEnv):
    """A VecRetroEnv made of Ray actors, each owning a local VecRetroEnv shard.

    Args:
        game: as VecRetroEnv (one value, or one per env).
        num_envs: total envs over all shards.
        state: as VecRetroEnv.
        scenario: as VecRetroEnv.
        envs_per_actor: envs in each shard (the last may hold fewer); default: the envs split
            evenly over ``num_nodes`` shards.
        num_nodes: shards to make when ``envs_per_actor`` is not given; default: the number of
            alive nodes in the Ray cluster.
        restart: replace a lost actor (node gone, actor killed) by a new one; its envs then
            report ``truncated=True`` and ``infos["shard_restarted"]`` for the interrupted
            episodes. ``False``: raise :class:`~fastretro.errors.WorkerDiedError` naming the
            shard.
        actor_options: extra ``ray.remote`` options for the shard actors (e.g. resources).
        **options: every other VecRetroEnv option (frameskip, grayscale, autoreset_mode...).

    Observations are gathered into one new array per step (not a view of shared memory).
    """

    metadata: dict[str, Any] = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        game: str | Sequence[str] = DEFAULT_GAME,
        num_envs: int = 1,
        state: str | None | Sequence[str | None] = None,
        scenario: str | None | Sequence[str | None] = None,
        *,
        envs_per_actor: int | None = None,
        num_nodes: int | None = None,
        restart: bool = False,
        actor_options: dict | None = None,
        **options: Any,
    ) -> None:
        self._closed = True
        self._actors: list = []
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise InvalidArgumentError(f"Expected num_envs >= 1, got {num_envs!r}")
        for bad in ("batch_size", "copy"):
            if bad in options:
                raise InvalidArgumentError(f"RayVecRetroEnv does not take {bad!r}")
        if not ray.is_initialized():
            init()
        if envs_per_actor is None:
            nodes = num_nodes or sum(1 for n in ray.nodes() if n.get("Alive"))
            envs_per_actor = math.ceil(num_envs / max(1, nodes))
        if isinstance(envs_per_actor, bool) or not isinstance(envs_per_actor, int):
            raise InvalidArgumentError(
                f"Expected envs_per_actor to be an int, got {envs_per_actor!r}"
            )
        if envs_per_actor < 1:
            raise InvalidArgumentError(f"Expected envs_per_actor >= 1, got {envs_per_actor}")
        self.num_envs = num_envs
        self.restart = bool(restart)
        games = per_env(game, num_envs, "game")
        states = per_env(state, num_envs, "state")
        scenarios = per_env(scenario, num_envs, "scenario")
        bounds = list(range(0, num_envs, envs_per_actor)) + [num_envs]
        #: (first env, end) of each shard.
        self.shards = list(zip(bounds[:-1], bounds[1:]))
        self._specs = [(games[a:b], states[a:b], scenarios[a:b]) for a, b in self.shards]
        self._options = options
        self._actor_options = {
            "num_cpus": 0,
            "scheduling_strategy": "SPREAD",
            **(actor_options or {}),
        }
        self._remote = ray.remote(_Shard)
        self._seeds: list | None = None
        self._pending: list | None = None
        self._in_flight: dict = {}  # async mode: object ref -> shard
        self.shard_restarts = 0
        self._closed = False
        try:
            self._actors = [self._start(k) for k in range(len(self.shards))]
            described = ray.get([a.describe.remote() for a in self._actors])
        except BaseException:
            self.close()
            raise
        obs_space, act_space, mode, prep = described[0]
        self.single_observation_space = obs_space
        self.single_action_space = act_space
        self.observation_space = batch_space(obs_space, num_envs)
        self.action_space = batch_space(act_space, num_envs)
        self.autoreset_mode = mode
        self.preprocessing = prep
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.render_mode = None
        self.batch_size = None

    def _start(self, k: int):
        games, states, scenarios = self._specs[k]
        return self._remote.options(**self._actor_options).remote(
            games, states, scenarios, self._options
        )

    # -- gymnasium interface -------------------------------------------------------------------

    def reset(self, *, seed=None, options=None):
        """Reset every env; an int ``seed`` seeds env ``i`` with ``seed + i`` (as VecRetroEnv)."""
        self._check_open("reset")
        seeds = self._split_seeds(seed)
        self._seeds = seeds
        mask = None if options is None else options.get("reset_mask")
        refs = []
        for k, (a, b) in enumerate(self.shards):
            opts = None if mask is None else {"reset_mask": np.asarray(mask)[a:b]}
            refs.append(self._actors[k].reset.remote(seeds[k], opts))
        results = self._gather(refs, "reset")
        obs = np.concatenate([r[0] for r in results])
        return obs, _merge_infos([r[1] for r in results], [b - a for a, b in self.shards])

    def step_async(self, actions) -> None:
        """Send each shard its slice of ``actions``."""
        self._check_open("step_async")
        if self._pending is not None:
            raise StateMachineError(
                "Cannot call step_async while a step is pending: call step_wait"
            )
        actions = np.asarray(actions)
        if len(actions) != self.num_envs:
            raise InvalidArgumentError(
                f"Expected actions for num_envs={self.num_envs} envs, got {len(actions)}"
            )
        self._pending = [
            self._actors[k].step.remote(actions[a:b]) for k, (a, b) in enumerate(self.shards)
        ]

    def step_wait(self, timeout: float | None = None):
        """Gather every shard's step: one object-store round trip per shard."""
        self._check_open("step_wait")
        if self._pending is None:
            raise StateMachineError("Cannot call step_wait without a pending step_async")
        refs, self._pending = self._pending, None
        results = self._gather(refs, "step", timeout)
        sizes = [b - a for a, b in self.shards]
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        terminated = np.concatenate([r[2] for r in results])
        truncated = np.concatenate([r[3] for r in results])
        infos = _merge_infos([r[4] for r in results], sizes)
        restarted = np.concatenate(
            [np.full(n, bool(r[5]) if len(r) > 5 else False) for r, n in zip(results, sizes)]
        )
        if restarted.any():
            truncated |= restarted
            infos["shard_restarted"] = restarted
            infos["_shard_restarted"] = restarted.copy()
        return obs, rewards, terminated, truncated, infos

    def step(self, actions):
        """Step every env (``step_async`` + ``step_wait``)."""
        self.step_async(actions)
        return self.step_wait()

    # -- async mode across shards ------------------------------------------------------------------

    def async_reset(self, seed=None) -> None:
        """Reset every shard without waiting; each shows up in a later :meth:`recv`."""
        self._check_open("async_reset")
        if self._in_flight:
            raise StateMachineError("Cannot call async_reset while shards are running: recv them")
        seeds = self._split_seeds(seed)
        self._seeds = seeds
        self._in_flight = {
            self._actors[k].reset.remote(seeds[k], None): k for k in range(len(self.shards))
        }

    def send(self, actions, env_ids) -> None:
        """Start a step of whole shards: ``env_ids`` are the envs of shards returned by recv."""
        self._check_open("send")
        ids = np.asarray(env_ids)
        actions = np.asarray(actions)
        if len(actions) != len(ids):
            raise InvalidArgumentError(
                f"Expected one action per env id, got {len(actions)} for {len(ids)} ids"
            )
        for k, (a, b) in enumerate(self.shards):
            mine = (ids >= a) & (ids < b)
            if not mine.any():
                continue
            if sorted(ids[mine].tolist()) != list(range(a, b)):
                raise InvalidArgumentError(
                    f"Expected whole shards in env_ids: shard {k} is envs {a}..{b - 1}"
                )
            if k in self._in_flight.values():
                raise StateMachineError(f"Cannot send to shard {k}: it is still running")
            order = np.argsort(ids[mine])
            self._in_flight[self._actors[k].step.remote(actions[mine][order])] = k

    def recv(self, timeout: float | None = None):
        """Wait for whichever running shard finishes first; return its envs' results.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)`` of that shard's envs, with
            ``infos["env_id"]``; a reset shard returns zero rewards and no ends.
        """
        self._check_open("recv")
        if not self._in_flight:
            raise StateMachineError("Cannot call recv with no shard running: send first")
        ready, _ = ray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
        if not ready:
            raise TimeoutError(f"No shard finished within {timeout} s")
        k = self._in_flight.pop(ready[0])
        a, b = self.shards[k]
        result = self._get(k, ready[0], "step")
        n = b - a
        if len(result) == 2:  # a reset
            obs, infos = result
            result = (obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), infos)
        obs, rewards, terminated, truncated, infos = result[:5]
        infos = dict(infos)
        infos["env_id"] = np.arange(a, b)
        return obs, rewards, terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        """Close every shard and end its actor. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a lost actor has nothing left to close
                pass
            ray.kill(actor)
        self._actors = []

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def __del__(self) -> None:
        pass

    # -- internals -------------------------------------------------------------------------------

    def _gather(self, refs: list, what: str, timeout: float | None = None) -> list:
        return [self._get(k, ref, what, timeout) for k, ref in enumerate(refs)]

    def _get(self, k: int, ref, what: str, timeout: float | None = None):
        """Shard k's result, or (lost actor) a clear error or its replacement's reset."""
        try:
            return ray.get(ref, timeout=timeout)
        except ray.exceptions.RayActorError as exc:
            a, b = self.shards[k]
            if not self.restart or what != "step":
                self.close()
                raise WorkerDiedError(
                    f"Shard {k} (envs {a}..{b - 1}) was lost during {what}: "
                    f"{type(exc).__name__}; the pool has been closed",
                    index=a,
                ) from exc
            return self._replace(k)

    def _replace(self, k: int) -> tuple:
        # A new actor for shard k; its envs start new episodes, reported as truncated.
        self._actors[k] = self._start(k)
        self.shard_restarts += 1
        seeds = None if self._seeds is None else self._seeds[k]
        obs, infos = ray.get(self._actors[k].reset.remote(seeds, None))
        n = len(obs)
        return obs, np.zeros(n), np.zeros(n, bool), np.ones(n, bool), infos, True

    def _split_seeds(self, seed) -> list:
        if seed is None:
            return [None] * len(self.shards)
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            return [int(seed) + a for a, _ in self.shards]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise InvalidArgumentError(
                f"Expected seed to be None, an int or a list of num_envs={self.num_envs} ints"
            )
        return [seeds[a:b] for a, b in self.shards]

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise ClosedError(f"Cannot call {call}: the pool is closed")

    def __repr__(self) -> str:
        return f"RayVecRetroEnv(num_envs={self.num_envs}, shards={len(self.shards)})"


def _merge_infos(parts: list[dict], sizes: list[int]) -> dict:
    """Concatenate the shards' dict-of-arrays infos (keys missing in a shard are masked off)."""
    keys = sorted({k for p in parts for k in p})
    merged: dict[str, Any] = {}
    for key in keys:
        if key == "final_info":
            merged[key] = _merge_infos([p.get(key, {}) for p in parts], sizes)
            continue
        chunks = []
        for part, n in zip(parts, sizes):
            if key in part:
                chunks.append(np.asarray(part[key]))
            elif key.startswith("_"):
                chunks.append(np.zeros(n, bool))
            elif key == "final_obs":
                chunks.append(np.full(n, None, dtype=object))
            else:
                chunks.append(
                    np.zeros(n, dtype=np.asarray(next(p[key] for p in parts if key in p)).dtype)
                )
        merged[key] = np.concatenate(chunks)
    return merged
