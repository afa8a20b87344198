"""SB3VecEnv: a VecRetroEnv behind stable-baselines3's ``VecEnv`` interface.

SB3's algorithms, wrappers (``VecFrameStack``, ``VecTransposeImage``, ``VecMonitor``,
``VecNormalize``, ...) and callbacks take a ``VecEnv``: ``step`` returns ``(obs, rewards, dones,
infos)`` with one info dict per env, an env whose episode ends is reset within the same step, and
its last observation travels in ``infos[i]["terminal_observation"]``. This module maps the pool's
gymnasium interface (``SAME_STEP`` autoreset, dict-of-arrays infos) onto that.

Requires ``stable-baselines3`` (``pip install "fastretro[sb3]"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from fastretro.contest.render import tile_frames, to_rgb
from fastretro.errors import ActionError, ClosedError, InvalidArgumentError, StateMachineError
from fastretro.runtime.preprocess import copy_into

# Attributes the pool reads on every call, so that setting them takes effect; everything else
# (frameskip, sticky_prob, ...) was handed to the workers when they started.
_SETTABLE = ("step_timeout",)
# Pool calls that would bypass the adapter's bookkeeping (pending step, current observation).
_PROTOCOL = frozenset(
    {"reset", "reset_async", "reset_wait", "step", "step_async", "step_wait", "close"}
)
# Keys of the pool's infos that the adapter turns into SB3's terminal_observation / per-env info.
_FINAL_KEYS = frozenset({"final_obs", "_final_obs", "final_info", "_final_info"})


class SB3VecEnv(VecEnv):
    """A :class:`~fastretro.VecRetroEnv` as a stable-baselines3 ``VecEnv``.

    ``SB3VecEnv(VecRetroEnv(...))`` works with any autoreset mode. SB3 expects an env whose
    episode ends to be reset in that same step, with its last observation in
    ``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"]`` set when the
    episode was cut by the time limit rather than ended by the game (SB3 then bootstraps the
    value of that observation). A pool built with ``autoreset_mode="same_step"`` does that in
    its workers; with the default (NEXT_STEP) or DISABLED, this adapter resets the ended envs
    itself within the step (``reset_mask``), which costs one more round trip on the steps where
    an episode ends.

    Observations: ``reset`` and ``step`` return a new C-contiguous array each call, never a view
    of the pool's shared memory. SB3 keeps the previous observation (``_last_obs``) across
    ``env.step`` and stores it in the rollout buffer only after the step, so a view would hand it
    the next frame instead (and the pool's frame stack is a view of a ring that every step
    writes into). A fresh copy rather than a ring of preallocated buffers, because a ring is only
    safe for as many steps as it is deep, and existing training code (callbacks that append
    ``new_obs`` to a list, recorders) holds observations for longer; SB3's own ``DummyVecEnv``
    and ``SubprocVecEnv`` return new arrays too. Measured per step for 8 envs at frameskip 4 on
    the 2-core dev machine, the pool's step taking 6.5-9 ms: 224x320x3 RGB (1.7 MB) 0.14 ms,
    84x84 gray stacked 4 (0.23 MB, a strided view) 0.05 ms, within 10% of copying into a ring,
    because glibc hands the block freed with the previous observation to the next one. Where the
    allocator maps fresh pages instead (``MALLOC_MMAP_THRESHOLD_`` pinned) it costs 0.83 and
    0.22 ms, still small next to the step and to the policy's forward pass on the batch.

    Actions: passed to the pool unchanged, whatever the action set (MultiBinary
    ``(num_envs, buttons)``, Discrete ``(num_envs,)``, MultiDiscrete ``(num_envs, groups)``),
    except that floating-point arrays holding whole numbers, which SB3's MultiBinary policies
    produce (``0.0``/``1.0``), become int64; the pool validates the rest.

    Rendering: ``render_mode`` is ``"rgb_array"``. :meth:`get_images` returns one RGB frame per
    env from the current observation (no emulator renders anything: with ``grayscale`` or
    ``resize`` set, that is what the agent sees); :meth:`render` tiles them.

    Attributes: the pool has no per-env Python objects. :meth:`get_attr` and
    :meth:`env_method` reach the pool's own public attributes and methods, with one (identical)
    value per requested index; :meth:`set_attr` sets ``step_timeout`` only.

    Args:
        vec_retro_env: the pool (``autoreset_mode="same_step"`` saves a round trip per
            episode end), or a gymnasium ``VectorWrapper`` around it (stepped with ``step``
            inside :meth:`step_wait`, since wrappers do not forward ``step_async``). The
            adapter owns it from then on: :meth:`close` closes it.

    Raises:
        InvalidArgumentError: if ``vec_retro_env`` is not a gymnasium ``VectorEnv``, it is in
            async mode (``batch_size``), or its observation space is not a ``Box``.
        ClosedError: if the pool is already closed.
    """

    render_mode: str | None = "rgb_array"

    def __init__(self, vec_retro_env: gymnasium.vector.VectorEnv) -> None:
        pool = vec_retro_env
        if not isinstance(pool, gymnasium.vector.VectorEnv):
            raise InvalidArgumentError(
                "Expected a fastretro.VecRetroEnv (a gymnasium.vector.VectorEnv), got "
                f"{type(pool).__name__}"
            )
        if getattr(pool, "closed", False):
            raise ClosedError("Cannot wrap a closed VecRetroEnv: build a new one")
        mode = pool.metadata.get("autoreset_mode")
        # SB3 resets an env in the step that ends its episode. A SAME_STEP pool does that
        # itself; on any other pool this adapter resets the ended envs (reset_mask) within
        # the step: one more round trip on the steps where an episode ends.
        self._resets_ended = mode != AutoresetMode.SAME_STEP
        if self._resets_ended and not isinstance(mode, AutoresetMode):
            raise InvalidArgumentError(
                f"Expected a pool whose metadata names its gymnasium autoreset_mode, got {mode!r}"
            )
        batch_size = getattr(pool, "batch_size", None)
        if batch_size is not None:
            raise InvalidArgumentError(
                "Expected a lock-step VecRetroEnv (batch_size=None): SB3 steps every env "
                f"together, got batch_size={batch_size}"
            )
        space = pool.single_observation_space
        if not isinstance(space, gymnasium.spaces.Box):
            raise InvalidArgumentError(f"Expected a Box observation space, got {space}")
        self.pool = pool
        # A gymnasium VectorWrapper around the pool forwards step() but not the pool's
        # step_async/step_wait; such a stack is stepped synchronously in step_wait.
        self._async = callable(getattr(pool, "step_async", None)) and callable(
            getattr(pool, "step_wait", None)
        )
        self._pending: Any = None
        self._waiting = False
        # A stack of three gray frames has the shape of one RGB frame: get_images asks the
        # pool's options which it is, and guesses from the shape only for other producers.
        prep = getattr(pool, "preprocessing", None)
        self._frame_channels = None if prep is None else (1 if prep.grayscale else 3)
        self._channels_first = bool(getattr(prep, "channels_first", False))
        # The array the pool returned last: with copy=False a view that follows the shared
        # buffer, so get_images always shows the newest frame.
        self._current: np.ndarray | None = None
        super().__init__(pool.num_envs, space, pool.single_action_space)

    # -- stepping ---------------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        """Reset every env, with the seeds of :meth:`seed` and options of :meth:`set_options`.

        A step sent by ``step_async`` and not collected is collected and dropped first.

        Returns:
            A new ``(num_envs, *obs_shape)`` array (not shared memory). The pool's reset infos
            land in :attr:`reset_infos`.
        """
        if self._waiting and self._async:
            self.pool.step_wait()
        self._waiting, self._pending = False, None
        seed = self._pool_seed()
        options = self._options[0] if any(self._options) else None
        obs, infos = self.pool.reset(seed=seed, options=options)
        self.reset_infos = _split_infos(infos, self.num_envs)
        self._reset_seeds()
        self._reset_options()
        return self._own(obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions to every env and return at once; :meth:`step_wait` collects them.

        Args:
            actions: one entry per env, as the pool's action set takes them: buttons
                ``(num_envs, num_buttons)`` (integer, bool, or float holding 0.0/1.0), indices
                ``(num_envs,)`` or ``(num_envs, groups)``.

        Raises:
            ActionError: for a float array holding something other than whole numbers; the
                pool raises its own for the wrong shape, dtype or range.
        """
        actions = _as_pool_actions(actions)
        if self._async:
            self.pool.step_async(actions)
        elif self._waiting:
            raise StateMachineError(
                "Cannot call step_async while a step is pending: call step_wait first"
            )
        else:
            self._pending = actions
        self._waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        """Collect the step sent by :meth:`step_async`.

        Returns:
            ``(obs, rewards, dones, infos)``: obs a new array (see the class docstring),
            rewards float64 ``(num_envs,)``, dones bool ``(num_envs,)`` (terminated or
            truncated), infos a list of one dict per env. An env that is done has been reset:
            its obs row is the first of the next episode, and its info holds the last step's
            values with ``terminal_observation``; every info holds ``TimeLimit.truncated``.
        """
        if self._async:
            self._waiting = False
            obs, rewards, terminated, truncated, infos = self.pool.step_wait()
        else:
            if not self._waiting:
                raise StateMachineError("Cannot call step_wait without a pending step_async")
            actions, self._pending, self._waiting = self._pending, None, False
            obs, rewards, terminated, truncated, infos = self.pool.step(actions)
        dones = terminated | truncated
        per_env = _split_infos(infos, self.num_envs)
        if dones.any() and self._resets_ended:
            final_obs = np.empty(self.num_envs, dtype=object)
            for i in np.flatnonzero(dones):
                final_obs[i] = np.array(obs[i])
            final_info = per_env
            obs, infos = self.pool.reset(options={"reset_mask": dones})
            per_env = _split_infos(infos, self.num_envs)
        elif dones.any():
            final_obs = infos["final_obs"]
            final_info = _split_infos(infos.get("final_info", {}), self.num_envs)
        if dones.any():
            for i in np.flatnonzero(dones):
                # The pool's infos for an env reset in this step describe the new episode's
                # start; SB3 keeps those apart and reports the ending step's values.
                self.reset_infos[i] = dict(per_env[i])
                per_env[i].update(final_info[i])
                per_env[i]["terminal_observation"] = final_obs[i]
        for info, timeout in zip(per_env, (truncated & ~terminated).tolist()):
            info["TimeLimit.truncated"] = timeout
        return self._own(obs), rewards, dones, per_env

    def close(self) -> None:
        """Close the pool (its workers and shared memory). Idempotent."""
        self._current = None
        self._waiting, self._pending = False, None
        self.pool.close()

    def __enter__(self) -> SB3VecEnv:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SB3VecEnv({self.pool!r})"

    # -- seeds and options ------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next :meth:`reset`: env ``i`` gets ``seed + i`` (``None``: a random seed).

        Raises:
            InvalidArgumentError: if ``seed`` is not ``None`` or an int >= 0.
        """
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise InvalidArgumentError(f"Expected seed to be None or an int >= 0, got {seed!r}")
        return super().seed(None if seed is None else int(seed))

    def set_options(self, options: list[dict] | dict | None = None) -> None:
        """Set the options of the next :meth:`reset`.

        Args:
            options: one dict for every env, or a list of ``num_envs`` equal dicts: the pool
                takes one options dict for all its envs.

        Raises:
            InvalidArgumentError: for a list of the wrong length or of differing dicts.
        """
        if isinstance(options, (list, tuple)):
            if len(options) != self.num_envs:
                raise InvalidArgumentError(
                    f"Expected a list of num_envs={self.num_envs} option dicts, got {len(options)}"
                )
            if any(not _same(o, options[0]) for o in options[1:]):
                raise InvalidArgumentError(
                    "Expected the same reset options for every env (the pool takes one options "
                    f"dict for all its envs), got {list(options)!r}"
                )
        elif options is not None and not isinstance(options, dict):
            raise InvalidArgumentError(
                f"Expected options to be None, a dict or a list of dicts, got "
                f"{type(options).__name__}"
            )
        super().set_options(options)

    def _pool_seed(self) -> list[int] | None:
        seeds = self._seeds
        if all(s is None for s in seeds):
            return None
        if any(s is None for s in seeds):
            raise InvalidArgumentError(
                f"Expected a seed for every env or for none (use seed()), got {seeds}"
            )
        return [int(s) for s in seeds]

    # -- attributes -------------------------------------------------------------------------------

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Read an attribute of the pool (one value for all its envs), once per index.

        Raises:
            AttributeError: if the pool has no such public attribute (SB3's ``has_attr``
                relies on this type).
            InvalidArgumentError: for an index outside ``[0, num_envs)``.
        """
        rows = self._indices(indices)
        if attr_name == "render_mode":
            value = self.render_mode  # the adapter renders, not the pool
        else:
            value = self._pool_attr(attr_name, "get_attr")
        return [value] * len(rows)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set ``step_timeout`` on the pool; every other attribute is fixed at construction.

        Raises:
            AttributeError: if the pool has no such public attribute.
            InvalidArgumentError: for any other attribute, a subset of envs, an index outside
                ``[0, num_envs)``, or a bad value.
        """
        rows = self._indices(indices)
        self._pool_attr(attr_name, "set_attr")
        if attr_name not in _SETTABLE:
            raise InvalidArgumentError(
                f"Cannot set {attr_name!r}: VecRetroEnv fixes it at construction (its workers "
                f"read it when they start); settable: {list(_SETTABLE)}"
            )
        self._check_all(rows, f"set {attr_name!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InvalidArgumentError(f"Expected {attr_name} > 0 seconds, got {value!r}")
        setattr(self.pool, attr_name, float(value))

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Call a public method of the pool once; its result is returned once per index.

        The pool's methods act on all its envs at once, so ``indices`` must select them all.

        Raises:
            AttributeError: if the pool has no such public attribute.
            InvalidArgumentError: if it is not a method, is one of the stepping methods (use
                this adapter's), or ``indices`` selects a subset of envs.
        """
        rows = self._indices(indices)
        method = self._pool_attr(method_name, "env_method")
        if not callable(method):
            raise InvalidArgumentError(
                f"Expected the name of a VecRetroEnv method, got attribute {method_name!r}"
            )
        if method_name in _PROTOCOL:
            raise InvalidArgumentError(
                f"Cannot call {method_name!r} through env_method: it would bypass SB3VecEnv; "
                f"call SB3VecEnv.{method_name.split('_')[0]} instead"
            )
        self._check_all(rows, f"call {method_name!r}")
        result = method(*method_args, **method_kwargs)
        return [result] * len(rows)

    def env_is_wrapped(
        self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """``False`` for every index: the pool's envs are emulators, not gymnasium envs."""
        return [False] * len(self._indices(indices))

    def _pool_attr(self, name: str, call: str) -> Any:
        if not isinstance(name, str) or name.startswith("_"):
            raise AttributeError(
                f"{call} reaches the public attributes of the VecRetroEnv pool, got {name!r}"
            )
        try:
            return getattr(self.pool, name)
        except AttributeError:
            raise AttributeError(
                f"VecRetroEnv has no attribute {name!r}: {call} reaches the pool's own "
                "attributes (one value for all its envs); it has no per-env Python objects"
            ) from None

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        rows = [indices] if isinstance(indices, (int, np.integer)) else list(indices)
        bad = [
            i
            for i in rows
            if isinstance(i, bool)
            or not isinstance(i, (int, np.integer))
            or not 0 <= i < self.num_envs
        ]
        if bad:
            raise InvalidArgumentError(
                f"Expected env indices in [0, {self.num_envs}), got {bad[0]!r}"
            )
        return [int(i) for i in rows]

    def _check_all(self, rows: list[int], what: str) -> None:
        if sorted(set(rows)) != list(range(self.num_envs)):
            raise InvalidArgumentError(
                f"Cannot {what} for envs {rows} only: the pool holds one value for all its "
                f"{self.num_envs} envs; pass indices=None"
            )

    # -- rendering --------------------------------------------------------------------------------

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One RGB frame per env, from the current observation; nothing is tiled.

        Returns:
            A list of ``num_envs`` uint8 arrays of shape ``(H, W, 3)``, copies (they do not
            alias shared memory). A frame-stacked observation shows its newest frame; a gray
            frame is repeated on the three channels (see :func:`fastretro.contest.render.to_rgb`).

        Raises:
            ClosedError: after :meth:`close`.
            StateMachineError: before the first :meth:`reset`.
        """
        if getattr(self.pool, "closed", False):
            raise ClosedError("Cannot call get_images: the pool is closed")
        if self._current is None:
            raise StateMachineError("Cannot call get_images before reset: no observation yet")
        current = np.moveaxis(self._current, 1, -1) if self._channels_first else self._current
        rgb = to_rgb(current, self._frame_channels)
        return list(rgb.copy() if np.shares_memory(rgb, self._current) else rgb)

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """Tile :meth:`get_images` into one image (SB3's layout: ``tile_images``).

        Args:
            mode: ``"rgb_array"`` or ``None`` returns the image; ``"human"`` shows it in an
                OpenCV window, as SB3 does, and returns ``None``.

        Returns:
            uint8 array ``(rows * H, cols * W, 3)`` for ``"rgb_array"``, else ``None``.

        Raises:
            InvalidArgumentError: for any other mode.
        """
        if mode == "human":
            return super().render(mode)
        if mode not in (None, "rgb_array"):
            raise InvalidArgumentError(
                f"Expected render mode 'rgb_array', 'human' or None, got {mode!r}"
            )
        return tile_frames(np.stack(self.get_images()))

    # -- internals --------------------------------------------------------------------------------

    def _own(self, obs: np.ndarray) -> np.ndarray:
        self._current = obs
        out = np.empty(obs.shape, dtype=obs.dtype)
        copy_into(obs, out)
        return out


def _as_pool_actions(actions: Any) -> Any:
    arr = np.asarray(actions)
    if arr.dtype.kind != "f":
        return actions
    # SB3's Bernoulli distribution samples MultiBinary actions as float 0.0/1.0; the pool takes
    # integer buttons, so convert where nothing is lost and let the pool check the range.
    with np.errstate(invalid="ignore"):
        ints = arr.astype(np.int64)
    if not np.array_equal(ints, arr):
        bad = np.argwhere(ints != arr)[0]
        raise ActionError(
            f"Expected whole-number actions (float arrays of 0.0/1.0 are accepted), got "
            f"{arr[tuple(bad)].item()!r} at index {tuple(int(b) for b in bad)}"
        )
    return ints


def _split_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's dict of arrays with ``_key`` masks -> one dict per env (SB3's list)."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key in _FINAL_KEYS or (key.startswith("_") and key[1:] in infos):
            continue
        if isinstance(value, dict):
            column: Any = _split_infos(value, num_envs)
        elif isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype != object:
            column = value.tolist()  # Python scalars: what a single env's info would hold
        else:
            column = value
        mask = infos.get(f"_{key}")
        rows: Iterable[int] = range(num_envs) if mask is None else np.flatnonzero(mask).tolist()
        for i in rows:
            out[i][key] = column[i]
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # dicts holding arrays compare element-wise
        return a is b
