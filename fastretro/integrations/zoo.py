r"""The RL Baselines3 Zoo (``rl_zoo3``) trains on the pool, with its stock hyper-parameters.

One flag on the Zoo's own command line::

    python -m rl_zoo3.train --algo ppo --env BreakoutNoFrameskip-v4 \
        --gym-packages fastretro.integrations.zoo

or this module as the launcher, which takes every flag of ``rl_zoo3.train``::

    python -m fastretro.integrations.zoo --algo dqn --env PongNoFrameskip-v4

The Zoo imports each ``--gym-packages`` module before it builds anything; importing this one
hands the Zoo's ``ExperimentManager.create_envs`` the pool. For a ``<Game>NoFrameskip-v4`` id
(the ids of the Zoo's Atari benchmark) the Zoo still reads its hyper-parameters (the ``atari``
entry of ``hyperparams/<algo>.yml``), builds the algorithm, its callbacks and its evaluation as
always; only ``make_vec_env(spec.make, wrapper_class=AtariWrapper, ...)`` becomes
``GameMonitor(SB3VecEnv(VecRetroEnv(EnvConfig.dqn_atari(game, ...), n_envs)))``: the worker
processes run what ``AtariWrapper`` does (no-op starts, FIRE, 4 frames with the max of the
last two, a lost life ends the training episode, rewards clipped to their sign, 84x84 gray).
The Zoo then stacks ``VecFrameStack``, ``VecTransposeImage``, ``VecNormalize`` and its
``vec_env_wrapper`` on top as it does on its own envs, so a model it trains here has the
observation space of a stock run and loads in ``python -m rl_zoo3.enjoy``.

``AtariWrapper``'s keyword arguments in the hyper-parameters become the pool's
(:data:`ATARI_WRAPPER_FIELDS`), and ``--env-kwargs`` takes ALE's ``repeat_action_probability``
and ``full_action_space`` or any :class:`~fastretro.EnvConfig` / :class:`~fastretro.PoolConfig`
field (``--env-kwargs backend:"'stable-retro'"``). Any other id (CartPole, MuJoCo, ...) gets the
Zoo's own envs, unchanged. ``--vec-env`` (dummy/subproc) does not apply to the pool: its envs
always run in worker processes.

Requires ``rl_zoo3`` 2.x (docs/integrations.md says how to install it without its ``moviepy``
pin, which downgrades pillow).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from fastretro.errors import InvalidArgumentError

ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
#: ``AtariWrapper``'s keyword arguments and the :class:`~fastretro.EnvConfig` fields that do
#: the same in the workers (``screen_size`` becomes ``resize=(s, s)``).
ATARI_WRAPPER_FIELDS = {
    "noop_max": "noop_max",
    "frame_skip": "frameskip",
    "screen_size": "resize",
    "terminal_on_life_loss": "episodic_life",
    "clip_reward": "sign_reward",
    "action_repeat_probability": "sticky_prob",
}
#: ALE's ``gym.make`` keyword arguments (``--env-kwargs``) and their EnvConfig fields.
ALE_KWARGS = {"repeat_action_probability": "sticky_prob", "full_action_space": "actions"}
_NO_FRAMESKIP = re.compile(r"^(?P<game>[A-Za-z0-9]+)NoFrameskip-v4$")

_stock: dict[str, Callable] = {}


def atari_game(env_id: str) -> str | None:
    """The game of a ``<Game>NoFrameskip-v4`` id (``"Breakout"``), else ``None``."""
    match = _NO_FRAMESKIP.match(env_id)
    return match.group("game") if match else None


def pool_options(
    env_wrapper: Any, env_kwargs: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The EnvConfig overrides and PoolConfig options for the Zoo's wrapper and env kwargs.

    Args:
        env_wrapper: the ``env_wrapper`` entry of the Zoo's hyper-parameters: ``None``, the
            name of ``AtariWrapper``, ``{name: kwargs}``, or a list holding one of those.
        env_kwargs: the Zoo's ``env_kwargs`` (``--env-kwargs``): ALE's ``make`` arguments
            (:data:`ALE_KWARGS`) or fields of EnvConfig / PoolConfig.

    Returns:
        ``(env_options, pool_options)``, for ``EnvConfig.dqn_atari(game, **env_options)`` and
        ``VecRetroEnv(config, n, **pool_options)``.

    Raises:
        InvalidArgumentError: for a wrapper other than ``AtariWrapper`` (the pool has no per-env
            gymnasium env to wrap), or an unknown ``AtariWrapper`` argument.
    """
    from fastretro.config import split_options

    overrides: dict[str, Any] = {}
    wrappers = env_wrapper if isinstance(env_wrapper, list) else [env_wrapper]
    for wrapper in wrappers:
        if wrapper is None:
            continue
        name, kwargs = next(iter(wrapper.items())) if isinstance(wrapper, dict) else (wrapper, {})
        name = name if isinstance(name, str) else f"{name.__module__}.{name.__qualname__}"
        if name != ATARI_WRAPPER:
            raise InvalidArgumentError(
                f"Expected env_wrapper {ATARI_WRAPPER} (the workers run it), got {name}: the "
                "pool has no per-env gymnasium env to wrap; use vec_env_wrapper, or train "
                "without --gym-packages fastretro.integrations.zoo"
            )
        for key, value in (kwargs or {}).items():
            if key not in ATARI_WRAPPER_FIELDS:
                raise InvalidArgumentError(
                    f"Expected AtariWrapper arguments among {sorted(ATARI_WRAPPER_FIELDS)}, "
                    f"got {key!r}"
                )
            field = ATARI_WRAPPER_FIELDS[key]
            overrides[field] = (int(value), int(value)) if field == "resize" else value
    for key, value in (env_kwargs or {}).items():
        if key == "full_action_space":
            overrides["actions"] = "ale_full" if value else "ale_minimal"
        else:
            overrides[ALE_KWARGS.get(key, key)] = value
    return split_options(overrides)


class GameMonitor(VecMonitor):
    """``VecMonitor`` that counts whole games and the game's own score.

    In a stock Zoo run ``Monitor`` sits below ``AtariWrapper``: an episode in its logs (and in
    ``EvalCallback``'s count) is a whole game, its return the raw score, its length in frames.
    Here the wrapper runs in the workers, so this monitor reads the pool's infos instead: the
    raw ``reward``, and ``game_over`` or a time limit (``TimeLimit.truncated``) to end a game
    rather than every lost life. Lengths are agent steps times ``frameskip``.

    Args:
        venv: an ``SB3VecEnv`` (or a wrapper of one) over a pool.
        frameskip: frames per agent step, for the lengths.
        filename: where to write ``monitor.csv`` (a folder or a path), or ``None``.
    """

    def __init__(self, venv: VecEnv, frameskip: int = 1, filename: str | None = None) -> None:
        super().__init__(venv, filename)
        self.frameskip = int(frameskip)

    def step_wait(self) -> VecEnvStepReturn:
        """Step, and add ``infos[i]["episode"]`` where a game ends (not where a life is lost)."""
        obs, rewards, dones, infos = self.venv.step_wait()
        self.episode_returns += [info.get("reward", r) for info, r in zip(infos, rewards)]
        self.episode_lengths += self.frameskip
        new_infos = list(infos)
        for i in np.flatnonzero(dones):
            info = infos[i]
            if not (info.get("game_over", True) or info.get("TimeLimit.truncated", False)):
                continue
            episode = {
                "r": float(self.episode_returns[i]),
                "l": int(self.episode_lengths[i]),
                "t": round(time.time() - self.t_start, 6),
            }
            new_infos[i] = {**info, "episode": episode}
            self.episode_count += 1
            self.episode_returns[i] = 0
            self.episode_lengths[i] = 0
            if self.results_writer:
                self.results_writer.write_row(episode)
        return obs, rewards, dones, new_infos


def make_pool_vec_env(game: str, env_wrapper: Any) -> Callable[..., VecEnv]:
    """A stand-in for SB3's ``make_vec_env`` that builds the pool for ``game``.

    It takes ``make_vec_env``'s arguments as ``ExperimentManager.create_envs`` passes them
    (``n_envs``, ``seed``, ``env_kwargs``, ``monitor_dir``, ...) and ignores the env factory,
    the per-env ``wrapper_class`` (run by the workers instead: see :func:`pool_options`) and
    ``vec_env_cls``.
    """

    def make_vec_env(
        env_id: Any,
        n_envs: int = 1,
        seed: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
        monitor_dir: str | None = None,
        **_: Any,
    ) -> VecEnv:
        from fastretro import EnvConfig, SB3VecEnv, VecRetroEnv

        env_options, pool_opts = pool_options(env_wrapper, env_kwargs)
        # SAME_STEP: the workers reset an ended env within the step, as SB3 expects, without
        # a second round trip (SB3VecEnv's docstring).
        pool_opts.setdefault("autoreset_mode", "same_step")
        config = EnvConfig.dqn_atari(game, frame_stack=1, channels_first=False, **env_options)
        pool = VecRetroEnv(config, n_envs, **pool_opts)
        env = GameMonitor(SB3VecEnv(pool), frameskip=config.frameskip, filename=monitor_dir)
        if seed is not None:
            env.seed(seed)
        return env

    return make_vec_env


def install() -> None:
    """Make the Zoo's ``ExperimentManager`` build fastretro pools for ``NoFrameskip-v4`` ids.

    Idempotent; :func:`uninstall` undoes it. Importing this module calls it.
    """
    import rl_zoo3.exp_manager as zoo

    if _stock:
        return
    manager = zoo.ExperimentManager
    _stock.update(
        read_hyperparameters=manager.read_hyperparameters, create_envs=manager.create_envs
    )

    def read_hyperparameters(self):
        hyperparams, saved = _stock["read_hyperparameters"](self)
        # create_envs gets the wrapper as a closure; its name and arguments are read here.
        self.fastretro_env_wrapper = hyperparams.get("env_wrapper")
        return hyperparams, saved

    def create_envs(self, n_envs: int, eval_env: bool = False, no_log: bool = False) -> VecEnv:
        game = atari_game(self.env_name.gym_id)
        if game is None:
            return _stock["create_envs"](self, n_envs, eval_env, no_log)
        stock_make_vec_env = zoo.make_vec_env
        zoo.make_vec_env = make_pool_vec_env(game, getattr(self, "fastretro_env_wrapper", None))
        try:
            return _stock["create_envs"](self, n_envs, eval_env, no_log)
        finally:
            zoo.make_vec_env = stock_make_vec_env

    manager.read_hyperparameters = read_hyperparameters
    manager.create_envs = create_envs


def uninstall() -> None:
    """Give the Zoo back its own env creation."""
    import rl_zoo3.exp_manager as zoo

    for name, method in _stock.items():
        setattr(zoo.ExperimentManager, name, method)
    _stock.clear()


def main() -> None:
    """``python -m fastretro.integrations.zoo``: ``rl_zoo3.train`` on the pool."""
    from rl_zoo3.train import train

    train()


if __name__ == "__main__":
    # Run as a script, this file is ``__main__``; the module proper installs as it is imported
    # (once, whether or not --gym-packages names it too).
    from fastretro.integrations.zoo import main as _main

    _main()
else:
    install()
