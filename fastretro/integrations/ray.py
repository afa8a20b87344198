"""The pool across machines, on Ray: each actor owns a local VecRetroEnv shard.

A shard is an ordinary :class:`~fastretro.VecRetroEnv` (its emulators in subprocesses of the
actor, frames in that machine's shared memory). Ray places the actors (SPREAD strategy, so
shards land on different nodes when there are several), starts, watches and restarts them. The
steps themselves travel over a direct TCP connection from the driver to each actor
(``transport="socket"``, the default), set up through Ray with a per-shard random key: one
round trip per shard per step. ``transport="ray"`` sends them as Ray actor calls instead.

Why a direct connection: a Ray actor call costs several times the connection's round trip,
and on a small machine the extra CPU it burns in the driver and the actors is taken from the
emulators (``bench/bench_ray.py`` compares the two with a local pool). Ray's compiled graphs
cut the call's cost, but their actors poll for input and keep the cores busy while idle, so
they are not used.
The price: the driver must reach each node on an ephemeral TCP port (as Ray's own nodes do);
where a firewall forbids it, use ``transport="ray"``.

Who may connect: only a driver that proves it holds the shard's key, with HMAC-SHA256 in both
directions, before anything is unpickled (fastretro/integrations/ray_link.py, which holds the
link and the shard). The key travels through Ray, so the connection is as private as the
cluster; the data on it is not encrypted.

Start a cluster with ``ray start --head --system-config='{"max_direct_call_object_size":
4194304}'`` on one machine and ``ray start --address=HEAD:6379`` on the others, then
``ray.init(address="auto")`` in the driver. Without a running Ray, :class:`RayVecRetroEnv`
starts a local one with :func:`init`: everything then runs on this machine, which is how the
tests run it.

Why the system config (``transport="ray"`` only): Ray passes results up to
``max_direct_call_object_size`` (100 KB by default) inline and larger ones through its object
store; a shard's batch of four 84x84x4 observations is 113 KB, and the object-store path cost
5.5 ms per round trip here against 1.7 ms inline.

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
from fastretro.config import from_arguments
from fastretro.errors import (
    InvalidArgumentError,
    StateMachineError,
    WorkerDiedError,
)
from fastretro.runtime.contract import (
    RESTARTED,
    CallState,
    State,
    action_checks,
    add_restarted,
    reset_mask,
    shard_seeds,
)

try:
    import ray
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastretro.integrations.ray needs Ray: pip install "fastretro[ray]"') from exc

# After Ray's check, so that a missing Ray gets the message above.
from fastretro.integrations.ray_link import TRANSPORTS, _Shard, _ShardLost  # noqa: E402

#: Ray settings fastretro starts a local Ray with (see the module docstring).
SYSTEM_CONFIG = {"max_direct_call_object_size": 4 << 20}


def init(address: str | None = None, **kwargs: Any) -> None:
    """Start a local Ray tuned for shard results (``address=None``), or connect to a cluster.

    A cluster's settings are its own: start its head with ``--system-config`` as above.
    """
    if address is None:
        kwargs.setdefault("_system_config", SYSTEM_CONFIG)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, **kwargs)


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
            report ``truncated=True`` and ``infos["worker_restarted"]`` (the pool's name; also
            as ``infos["shard_restarted"]``) for the interrupted episodes. ``False``: raise
            :class:`~fastretro.errors.WorkerDiedError` naming the shard.
        actor_options: extra ``ray.remote`` options for the shard actors (e.g. resources).
        transport: how steps travel between the driver and the shards. ``"socket"`` (default):
            a direct TCP connection to each actor, set up through Ray (the driver must reach
            the nodes on ephemeral ports). ``"ray"``: Ray actor calls, one object-store round
            trip per shard per step; slower (bench/bench_ray.py), needs no extra ports.
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
        transport: str = "socket",
        **options: Any,
    ) -> None:
        self._calls = CallState(0)  # closed until the shards run: close() is a no-op
        self._links: list = []
        if transport not in TRANSPORTS:
            raise InvalidArgumentError(
                f"Expected transport to be one of {sorted(TRANSPORTS)}, got {transport!r}"
            )
        self.transport = transport
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise InvalidArgumentError(f"Expected num_envs >= 1, got {num_envs!r}")
        # Snapshots live in each shard's shared memory, and no call carries them across.
        for bad in ("batch_size", "copy", "snapshot_best"):
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
        # Every option is checked here, on the driver, before any shard starts.
        config, pool = from_arguments(game, num_envs, state, scenario, None, None, options)
        #: The call-state machine and its checks (fastretro/runtime/contract.py), as the pool's.
        self._calls = CallState(
            num_envs, None, pool.seed, pool.autoreset_mode == AutoresetMode.DISABLED
        )
        #: What every env is and does (each shard runs its slice of it).
        self.config = config
        per_env = {name: config.per_env(name, num_envs) for name in ("game", "state", "scenario")}
        bounds = list(range(0, num_envs, envs_per_actor)) + [num_envs]
        #: (first env, end) of each shard.
        self.shards = list(zip(bounds[:-1], bounds[1:]))
        self._shard_configs = [
            (
                config.replace(**{name: tuple(v[a:b]) for name, v in per_env.items()}),
                # copy=True for the "ray" transport: Ray may serialise the result after the
                # method returns, and a view of shared memory must not travel while the workers
                # write into it. The socket transport pickles each result before the next step.
                # seed=None: the driver splits the seed, so that env i gets seed + i.
                pool.replace(num_envs=b - a, copy=transport == "ray", seed=None),
            )
            for a, b in self.shards
        ]
        self._actor_options = {
            "num_cpus": 0,
            "scheduling_strategy": "SPREAD",
            **(actor_options or {}),
        }
        self._remote = ray.remote(_Shard)
        self._sizes = [b - a for a, b in self.shards]
        self._env_seeds = np.full(num_envs, -1, dtype=np.int64)  # a replacement's reset reuses
        self._last: list = []  # each shard's last (obs, infos)
        self._in_flight: dict[int, str] = {}  # async mode: shard -> "reset" or "step"
        self.shard_restarts = 0
        actors: list = []
        try:
            for k in range(len(self.shards)):
                actors.append(self._start(k))
            described = [_describe(k, a, self.shards[k]) for k, a in enumerate(actors)]
            for k, actor in enumerate(actors):
                self._links.append(TRANSPORTS[transport](actor, k))
        except BaseException:
            for k, actor in enumerate(actors):
                _end_shard(actor, self._links[k] if k < len(self._links) else None)
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
        # Until a shard has results, a reset that leaves it out shows what the pool would: zeros.
        self._last = [(np.zeros((n, *obs_space.shape), obs_space.dtype), {}) for n in self._sizes]
        self._checks = action_checks(act_space, num_envs, "num_envs")
        self._send_checks = action_checks(act_space, num_envs, "len(env_ids)")
        self._calls.open()

    def _start(self, k: int):
        return self._remote.options(**self._actor_options).remote(*self._shard_configs[k])

    @property
    def _actors(self) -> list:
        """The shards' Ray actors, in shard order."""
        return [link.actor for link in self._links]

    # -- gymnasium interface -------------------------------------------------------------------

    def reset(self, *, seed=None, options=None):
        """Reset every env, or those of ``options["reset_mask"]`` (as :meth:`VecRetroEnv.reset`).

        An int ``seed`` seeds env ``i`` with ``seed + i``, whichever shard runs it. Only the
        shards with a masked env are reset; the others' observations are those of their last
        step.
        """
        self._calls.check_idle("reset")
        self._check_no_shard_running("reset")
        mask = reset_mask(options, self.num_envs)
        seeds = self._calls.seeds(seed)
        self._env_seeds[mask] = seeds[mask]
        partial = options is not None and options.get("reset_mask") is not None
        per_shard = shard_seeds(seeds, self.shards)
        for k, (a, b) in enumerate(self.shards):
            if mask[a:b].any():
                opts = {"reset_mask": mask[a:b].copy()} if partial else None
                self._links[k].submit("reset", per_shard[k], opts)
        results = [
            self._get(k, "reset") if mask[a:b].any() else self._last[k]
            for k, (a, b) in enumerate(self.shards)
        ]
        self._keep_last(results)
        self._calls.mark_reset(mask)
        obs = np.concatenate([r[0] for r in results])
        return obs, _merge_infos([r[1] for r in results], self._sizes)

    def step_async(self, actions) -> None:
        """Send each shard its slice of ``actions`` (checked here, as the pool checks them)."""
        self._calls.check_idle("step_async")
        self._check_no_shard_running("step_async")
        self._calls.check_reset_once(None, "step_async", "reset")
        self._calls.check_no_reset_due()
        self._checks.check(actions, self.num_envs)
        actions = np.asarray(actions)
        for k, (a, b) in enumerate(self.shards):
            self._links[k].submit("step", actions[a:b])
        self._calls.begin(State.WAITING_STEP)

    def step_wait(self, timeout: float | None = None):
        """Gather every shard's step: one round trip per shard.

        The envs of a shard that was replaced (``restart=True``) report ``truncated`` and
        ``infos["worker_restarted"]`` (also as ``infos["shard_restarted"]``).
        """
        self._calls.check_waiting(State.WAITING_STEP, "step_wait", "step_async")
        self._calls.end()
        results = self._gather("step", timeout)
        self._keep_last(results)
        sizes = self._sizes
        obs = np.concatenate([r[0] for r in results])
        rewards = np.concatenate([r[1] for r in results])
        terminated = np.concatenate([r[2] for r in results])
        truncated = np.concatenate([r[3] for r in results])
        infos = _merge_infos([r[4] for r in results], sizes)
        restarted = np.concatenate(
            [np.full(n, bool(r[5]) if len(r) > 5 else False) for r, n in zip(results, sizes)]
        )
        self._calls.episodes_ended((terminated | truncated) & ~restarted)
        if restarted.any():
            truncated |= restarted
            _add_shard_restarted(infos, restarted)
        return obs, rewards, terminated, truncated, infos

    def step(self, actions):
        """Step every env (``step_async`` + ``step_wait``)."""
        self.step_async(actions)
        return self.step_wait()

    # -- async mode across shards ------------------------------------------------------------------

    def async_reset(self, seed=None) -> None:
        """Reset every shard without waiting; each shows up in a later :meth:`recv`."""
        self._calls.check_idle("async_reset")
        self._check_no_shard_running("async_reset")
        seeds = self._calls.seeds(seed)
        self._env_seeds[:] = seeds
        for k, shard_seed in enumerate(shard_seeds(seeds, self.shards)):
            self._links[k].submit("reset", shard_seed, None)
        self._in_flight = {k: "reset" for k in range(len(self.shards))}
        self._calls.mark_reset(None)

    def send(self, actions, env_ids) -> None:
        """Start a step of whole shards: ``env_ids`` are the envs of shards returned by recv."""
        self._calls.check_idle("send")
        ids = np.asarray(env_ids)
        if ids.ndim != 1 or ids.dtype.kind not in "iu" or not len(ids):
            raise InvalidArgumentError(
                f"Expected env_ids to be a non-empty 1-D array of ints, got {ids.dtype} array "
                f"of shape {ids.shape}"
            )
        if ((ids < 0) | (ids >= self.num_envs)).any():
            raise InvalidArgumentError(
                f"Expected env_ids in [0, {self.num_envs}), got {ids.tolist()}"
            )
        self._calls.check_reset_once(ids, "send", "async_reset")
        self._send_checks.check(actions, len(ids))
        actions = np.asarray(actions)
        for k, (a, b) in enumerate(self.shards):
            mine = (ids >= a) & (ids < b)
            if not mine.any():
                continue
            if sorted(ids[mine].tolist()) != list(range(a, b)):
                raise InvalidArgumentError(
                    f"Expected whole shards in env_ids: shard {k} is envs {a}..{b - 1}"
                )
            if k in self._in_flight:
                raise StateMachineError(f"Cannot send to shard {k}: it is still running")
            order = np.argsort(ids[mine])
            self._links[k].submit("step", actions[mine][order])
            self._in_flight[k] = "step"

    def recv(self, timeout: float | None = None):
        """Wait for whichever running shard finishes first; return its envs' results.

        Returns:
            ``(obs, rewards, terminated, truncated, infos)`` of that shard's envs, with
            ``infos["env_id"]``; a reset shard returns zero rewards and no ends.
        """
        self._calls.check_open("recv")
        if not self._in_flight:
            raise StateMachineError("Cannot call recv with no shard running: send first")
        # Longest-running shard first among those ready: a shard that is always ready by the
        # time recv is called must not starve the others (``_in_flight`` keeps send order).
        running = [self._links[k] for k in self._in_flight]
        ready = TRANSPORTS[self.transport].first_ready(running, timeout)
        if ready is None:
            raise TimeoutError(f"No shard finished within {timeout} s")
        k = self._links.index(ready)
        self._in_flight.pop(k)
        a, b = self.shards[k]
        result = self._get(k, "step")
        self._keep_last({k: result})
        n = b - a
        if len(result) == 2:  # a reset
            obs, infos = result
            result = (obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), infos)
        obs, rewards, terminated, truncated, infos = result[:5]
        infos = dict(infos)
        if len(result) > 5 and result[5]:
            _add_shard_restarted(infos, np.ones(n, bool))
        infos["env_id"] = np.arange(a, b)
        return obs, rewards, terminated, truncated, infos

    def close(self, **kwargs: Any) -> None:
        """Close every shard and end its actor. Idempotent."""
        if self._calls.closed:
            return
        self._calls.close()
        for link in self._links:
            _end_shard(link.actor, link)
        self._links = []

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._calls.closed

    @property
    def worker_restarts(self) -> int:
        """Shards replaced after being lost (``restart=True``): the pool's name for it."""
        return self.shard_restarts

    def __del__(self) -> None:
        pass

    # -- internals -------------------------------------------------------------------------------

    def _gather(self, what: str, timeout: float | None = None) -> list:
        return [self._get(k, what, timeout) for k in range(len(self._links))]

    def _get(self, k: int, what: str, timeout: float | None = None):
        """Shard k's result, or (lost actor) a clear error or its replacement's reset."""
        try:
            return self._links[k].result(timeout)
        except _ShardLost as exc:
            a, b = self.shards[k]
            if not self.restart or what != "step":
                died = WorkerDiedError(
                    f"Shard {k} (envs {a}..{b - 1}) was lost during {what}: "
                    f"{exc}; the pool has been closed",
                    index=a,
                )
                self._calls.fail(died)
                self.close()
                raise died from exc
            return self._replace(k)
        except TimeoutError:
            raise
        except Exception as exc:
            a, b = self.shards[k]
            exc.add_note(
                f"Raised in shard {k} (envs {a}..{b - 1}): env numbers in the message count "
                "from that shard's first env."
            )
            raise

    def _replace(self, k: int) -> tuple:
        # A new actor for shard k; its envs start new episodes, reported as truncated.
        _end_shard(self._links[k].actor, self._links[k], timeout=1)  # closes its connection
        actor = self._start(k)
        _describe(k, actor, self.shards[k])  # constructed (or its error raised) before linking
        self._links[k] = TRANSPORTS[self.transport](actor, k)
        self.shard_restarts += 1
        (seeds,) = shard_seeds(self._env_seeds, [self.shards[k]])
        self._links[k].submit("reset", seeds, None)
        obs, infos = self._links[k].result()
        n = len(obs)
        return obs, np.zeros(n), np.zeros(n, bool), np.ones(n, bool), infos, True

    def _keep_last(self, results: list | dict) -> None:
        """Shards' observations and infos, for a later reset that leaves them out.

        ``results``: every shard's result in order, or ``{shard: result}``.
        """
        for k, r in results.items() if isinstance(results, dict) else enumerate(results):
            infos = r[1] if len(r) == 2 else r[4]
            self._last[k] = (r[0], {key: v for key, v in infos.items() if key not in _STEP_ONLY})

    def _check_no_shard_running(self, call: str) -> None:
        self._calls.check_none_running(call, sorted(self._in_flight), "shards")

    def __repr__(self) -> str:
        return f"RayVecRetroEnv(num_envs={self.num_envs}, shards={len(self.shards)})"


#: Infos that belong to the step that made them, not to the env's state.
_STEP_ONLY = {key for name in ("final_obs", "final_info", RESTARTED) for key in (name, f"_{name}")}


def _add_shard_restarted(infos: dict, restarted: np.ndarray) -> None:
    """Mark the envs of replaced shards as the contract says (``worker_restarted``)."""
    add_restarted(infos, restarted)
    # Also under the name this class used before the contract: docs/integrations.md documents it.
    infos["shard_restarted"] = restarted
    infos["_shard_restarted"] = restarted.copy()


def _describe(k: int, actor, envs: tuple[int, int]) -> tuple:
    """Shard k's spaces; a failure to build its pool is raised as the original exception."""
    try:
        return ray.get(actor.describe.remote())
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, Exception) else exc
        cause.add_note(f"Raised while shard {k} (envs {envs[0]}..{envs[1] - 1}) built its pool.")
        raise cause from None


def _end_shard(actor, link, timeout: float = 30) -> None:
    """Close a shard's pool (through its link once it has one), then end its actor."""
    try:
        if link is not None:
            link.close(timeout)
        else:
            ray.get(actor.close.remote(), timeout=timeout)
    except Exception:  # noqa: BLE001 - a lost actor has nothing left to close
        pass
    ray.kill(actor)


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
