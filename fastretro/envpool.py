"""EnvPool's API on fastretro: ``import fastretro.envpool as envpool`` and nothing else changes.

```python
import fastretro.envpool as envpool

envs = envpool.make("Pong-v5", env_type="gymnasium", num_envs=8, episodic_life=True,
                    reward_clip=True, seed=1)
obs, info = envs.reset()                        # (8, 4, 84, 84) uint8
obs, rew, term, trunc, info = envs.step(np.zeros(8, np.int32))
```

Task ids are EnvPool's Atari ids for the games fastretro runs (``Pong-v5``, ``Breakout-v5``,
...: :func:`list_all_envs`) and stable-retro game IDs (``Airstriker-Genesis-v0``). Options are
EnvPool's, with its defaults (:mod:`fastretro.integrations.envpool_compat` lists them and says
how each maps); fastretro's own EnvConfig and PoolConfig fields are accepted too
(``backend="stable-retro"``, ``copy=False``). An option fastretro cannot honour raises
:class:`~fastretro.errors.InvalidArgumentError` naming it. The env is an
:class:`~fastretro.integrations.envpool_env.EnvPoolVecEnv` over a :class:`~fastretro.VecRetroEnv`.
"""

from __future__ import annotations

from typing import Any

from fastretro.errors import InvalidArgumentError

__all__ = ["list_all_envs", "make", "make_dm", "make_gym", "make_gymnasium", "make_spec"]

ENV_TYPES = ("gymnasium", "gym")


def make(task_id: str, env_type: str = "gymnasium", **kwargs: Any):
    """A pool of ``num_envs`` envs of ``task_id`` with EnvPool's API and options.

    Args:
        task_id: ``"Pong-v5"`` (EnvPool's Atari ids) or a stable-retro game ID.
        env_type: ``"gymnasium"`` or ``"gym"`` (the same API, as in EnvPool 1.2: gym >= 0.26's
            ``reset -> (obs, info)`` and 5-tuple ``step``). ``"dm"`` is not offered.
        **kwargs: EnvPool's options (``num_envs``, ``batch_size``, ``seed``, ``episodic_life``,
            ``reward_clip``, ``stack_num``, ...) or fastretro's EnvConfig/PoolConfig fields.

    Returns:
        An :class:`~fastretro.integrations.envpool_env.EnvPoolVecEnv`.

    Raises:
        InvalidArgumentError: an unknown option, or one fastretro cannot honour, named.
        GameNotFoundError: an unknown task id.
    """
    from fastretro.config import EnvConfig, PoolConfig, split_options
    from fastretro.integrations import envpool_compat as compat
    from fastretro.integrations.envpool_env import EnvPoolVecEnv
    from fastretro.runtime.pool import VecRetroEnv

    _check_env_type(env_type)
    task = compat.resolve_task(task_id)
    config, native = compat.check_options(task, kwargs)
    seeds = compat.first_seeds(config)
    env_native, pool_native = split_options(native)
    env_config = EnvConfig(**{**compat.env_options(task, config), **env_native})
    pool_options = {"num_envs": config["num_envs"], "batch_size": compat.batch_size(config)}
    pool_config = PoolConfig(**{**pool_options, "copy": True, **pool_native})
    return EnvPoolVecEnv(VecRetroEnv(env_config, pool=pool_config), config, seeds)


def make_gymnasium(task_id: str, **kwargs: Any):
    """``make(task_id, "gymnasium", **kwargs)``."""
    return make(task_id, "gymnasium", **kwargs)


def make_gym(task_id: str, **kwargs: Any):
    """``make(task_id, "gym", **kwargs)``: the gymnasium API, as EnvPool 1.2's ``make_gym``."""
    return make(task_id, "gym", **kwargs)


def make_dm(task_id: str, **kwargs: Any):
    """EnvPool's dm_env API: not offered (raises)."""
    return make(task_id, "dm", **kwargs)


def make_spec(task_id: str, **kwargs: Any):
    """The :class:`~fastretro.integrations.envpool_env.EnvSpec` of ``make``'s env.

    Its ``config`` namedtuple and one env's spaces, without starting a pool.
    """
    import gymnasium
    import numpy as np

    from fastretro.integrations import envpool_compat as compat
    from fastretro.integrations.envpool_env import EnvSpec
    from fastretro.runtime.backends.ale import minimal_actions

    task = compat.resolve_task(task_id)
    config, _ = compat.check_options(task, kwargs)
    compat.env_options(task, config)  # checks the options as make does
    channels = config["stack_num"] * (1 if config["gray_scale"] else 3)
    shape = (channels, config["img_height"], config["img_width"])
    obs_space = gymnasium.spaces.Box(0, 255, shape, np.uint8)
    action_space = None
    if task.atari:
        n = 18 if config["full_action_space"] else len(minimal_actions(task.game))
        action_space = gymnasium.spaces.Discrete(n)
    return EnvSpec(config, obs_space, action_space)


def list_all_envs() -> list[str]:
    """The task ids :func:`make` takes.

    EnvPool's Atari ids of the games fastretro runs, then the stable-retro games whose ROM is
    present.
    """
    from fastretro.integrations.envpool_compat import atari_tasks
    from fastretro.runtime.games import ale_runs, known_games, rom_imported

    retro = [g for g in known_games() if rom_imported(g) or ale_runs(g)]
    return [*atari_tasks(), *retro]


def _check_env_type(env_type: str) -> None:
    if env_type == "dm":
        raise InvalidArgumentError(
            "env_type='dm' is not supported: fastretro offers EnvPool's gymnasium API "
            "(env_type='gymnasium' or 'gym')"
        )
    if env_type not in ENV_TYPES:
        raise InvalidArgumentError(
            f"Expected env_type to be 'gymnasium' or 'gym', got {env_type!r}"
        )
