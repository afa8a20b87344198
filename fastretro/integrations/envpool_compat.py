"""EnvPool's task ids and options, translated into fastretro's :class:`~fastretro.EnvConfig`.

EnvPool (>= 1.0) names an Atari game ``Pong-v5`` and configures it with its own option names and
defaults (``envpool/atari/atari_env.h``'s ``DefaultConfig``, ``envpool/core/env_spec.h``'s
``common_config``, ``envpool/atari/registration.py``). This module holds those tables and turns
one ``make`` call's options into fastretro's two configs; :mod:`fastretro.envpool` and the
gymnasium registry (:mod:`fastretro.integrations.gym_registry`) both use it.

What cannot be honoured raises :class:`~fastretro.errors.InvalidArgumentError` naming the option.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

from fastretro.errors import GameNotFoundError, InvalidArgumentError

#: EnvPool's common options (``common_config``) and their defaults.
COMMON_DEFAULTS: dict[str, Any] = {
    "num_envs": 1,
    "batch_size": 0,
    "num_threads": 0,
    "max_num_players": 1,
    "thread_affinity_offset": -1,
    "base_path": "envpool",
    "seed": 42,
    "env_seed": None,
    "gym_reset_return_info": True,
}
#: EnvPool's Atari options (``AtariEnvFns::DefaultConfig``) and their defaults, with the
#: ``max_episode_steps`` its registration gives every Atari task (108,000 frames).
ATARI_DEFAULTS: dict[str, Any] = {
    "stack_num": 4,
    "frame_skip": 4,
    "noop_max": 30,
    "zero_discount_on_life_loss": False,
    "episodic_life": False,
    "reward_clip": False,
    "use_fire_reset": True,
    "img_height": 84,
    "img_width": 84,
    "task": "pong",
    "mode": -1,
    "difficulty": -1,
    "full_action_space": False,
    "repeat_action_probability": 0.0,
    "use_inter_area_resize": True,
    "gray_scale": True,
    "max_episode_steps": 27_000,
}
#: A stable-retro game under the same options: its episode starts from its save state, as
#: stable-retro's does (EnvPool's no-op and FIRE starts are Atari's), and its actions are
#: stable-retro's discrete combos.
RETRO_DEFAULTS: dict[str, Any] = {**ATARI_DEFAULTS, "noop_max": 0, "use_fire_reset": False}
#: Options accepted and then left alone: fastretro places its workers itself (a worker per core
#: for ALE; ``envs_per_worker`` is its own knob), finds its ROMs itself, and
#: ``zero_discount_on_life_loss`` only changes the ``discount`` of EnvPool's dm_env API.
IGNORED = ("num_threads", "thread_affinity_offset", "base_path", "zero_discount_on_life_loss")
#: EnvPool's rendering options: fastretro's pool does not render.
RENDER_OPTIONS = ("render_mode", "render_env_id", "render_width", "render_height",
                  "render_camera_id", "from_pixels")  # fmt: skip
#: The DQN-era fields of EnvConfig that EnvPool's options map to, and their "off" values.
PROTOCOL_FIELDS = {"noop_max": 0, "fire_reset": False, "episodic_life": False, "sign_reward": False}


@dataclasses.dataclass(frozen=True)
class Task:
    """One EnvPool task id, resolved.

    Attributes:
        task_id: as given (``"Pong-v5"``, ``"Airstriker-Genesis-v0"``).
        game: the stable-retro game ID (``"Pong-Atari2600-v0"``).
        task: EnvPool's ``task`` option: ALE's ROM name for Atari (``"pong"``), else the game.
        atari: an Atari 2600 game (ALE's action sets, EnvPool's Atari defaults).
    """

    task_id: str
    game: str
    task: str
    atari: bool

    @property
    def defaults(self) -> dict[str, Any]:
        """EnvPool's defaults for this task (common and env options)."""
        return {**COMMON_DEFAULTS, **(ATARI_DEFAULTS if self.atari else RETRO_DEFAULTS),
                "task": self.task}  # fmt: skip


@functools.lru_cache(maxsize=1)
def atari_tasks() -> dict[str, tuple[str, str]]:
    """``{"Pong-v5": ("Pong-Atari2600-v0", "pong"), ...}``: the Atari games fastretro runs.

    EnvPool names a task after ALE's ROM (``space_invaders`` -> ``SpaceInvaders-v5``), as ALE's
    own ids do; fastretro's Atari games are those of ``fastretro/data/atari.json``.
    """
    from fastretro.runtime.backends.ale import atari_data

    return {
        envpool_name(entry["rom"]) + "-v5": (game, entry["rom"])
        for game, entry in sorted(atari_data()["games"].items())
    }


def envpool_name(rom: str) -> str:
    """EnvPool's (and ALE's) name of an ALE ROM: ``"space_invaders"`` -> ``"SpaceInvaders"``."""
    return "".join(part.capitalize() for part in rom.split("_"))


def resolve_task(task_id: str) -> Task:
    """The :class:`Task` of an EnvPool Atari id (``"Pong-v5"``) or a stable-retro game ID.

    Raises:
        GameNotFoundError: neither, with the closest ids.
    """
    if not isinstance(task_id, str):
        raise InvalidArgumentError(f"Expected task_id to be a str, got {type(task_id).__name__}")
    tasks = atari_tasks()
    if task_id in tasks:
        game, rom = tasks[task_id]
        return Task(task_id, game, rom, atari=True)
    from fastretro.runtime.games import known_games

    if task_id in known_games():
        return Task(task_id, task_id, task_id, atari=task_id.endswith("-Atari2600-v0"))
    close = difflib.get_close_matches(task_id, [*tasks, *known_games()], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise GameNotFoundError(
        f"{task_id} is not supported: expected one of EnvPool's Atari ids fastretro runs "
        f"({', '.join(list(tasks)[:3])}, ...) or a stable-retro game ID.{hint} "
        "`fastretro.envpool.list_all_envs()` lists them."
    )


def check_options(task: Task, options: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split ``make``'s keyword options into EnvPool's config and fastretro's own options.

    Returns:
        ``(config, native)``: EnvPool's full config (its defaults, then ``options``) and the
        fastretro EnvConfig/PoolConfig fields passed as they are (they win over the EnvPool
        options they overlap).

    Raises:
        InvalidArgumentError: an unknown option, or one fastretro cannot honour, named.
    """
    from fastretro.config import ENV_FIELDS, POOL_FIELDS

    defaults = task.defaults
    config = dict(defaults)
    native = {}
    for name, value in options.items():
        if name in defaults:
            config[name] = value
        elif name in RENDER_OPTIONS:
            if value not in (None, False):
                raise InvalidArgumentError(
                    f"{name}={value!r} is not supported: fastretro's pool does not render"
                )
        elif name in ENV_FIELDS + POOL_FIELDS and name not in ("game", "num_envs"):
            native[name] = value
        else:
            valid = [*defaults, *ENV_FIELDS, *POOL_FIELDS]
            close = difflib.get_close_matches(name, valid, n=2)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise InvalidArgumentError(
                f"Unknown option {name!r} for {task.task_id}{hint} (EnvPool's options and "
                "fastretro's EnvConfig and PoolConfig fields are accepted)"
            )
    if config["task"] != task.task:
        raise InvalidArgumentError(
            f"task={config['task']!r} is not supported: the task id {task.task_id} names the "
            f"game ({task.task!r})"
        )
    _check_unsupported(config)
    return config, native


def _check_unsupported(config: Mapping[str, Any]) -> None:
    for name in ("mode", "difficulty"):
        if config[name] != -1:
            raise InvalidArgumentError(
                f"{name}={config[name]!r} is not supported: fastretro runs each game's default "
                f"{name} (expected {name}=-1)"
            )
    if not config["use_inter_area_resize"]:
        raise InvalidArgumentError(
            "use_inter_area_resize=False is not supported: fastretro resizes by area averaging "
            "(cv2.INTER_AREA), EnvPool's use_inter_area_resize=True"
        )
    if config["max_num_players"] != 1:
        raise InvalidArgumentError(
            f"max_num_players={config['max_num_players']!r} is not supported: fastretro's envs "
            "have one player (expected 1)"
        )
    if not config["gym_reset_return_info"]:
        raise InvalidArgumentError(
            "gym_reset_return_info=False is not supported: reset returns (obs, info), as "
            "gymnasium and EnvPool >= 1.0 do"
        )


def env_options(task: Task, config: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`~fastretro.EnvConfig` fields of an EnvPool config.

    Observations are EnvPool's: ``stack_num`` frames of ``img_height`` x ``img_width``, gray
    or RGB, channels first, the max of each step's last two frames when ``frame_skip`` > 1.

    ``repeat_action_probability`` becomes fastretro's ``sticky_prob``: EnvPool hands it to ALE,
    which draws on every frame whether to keep the previous frame's action, so an old action may
    last several frames (k with probability p**k); fastretro keeps the previous action on a
    step's first frame only, with probability p (the Retro Contest's rule). Both keep the old
    action at a step's start with probability p.
    """
    if task.atari:
        actions = "ale_full" if config["full_action_space"] else "ale_minimal"
    elif config["full_action_space"]:
        raise InvalidArgumentError(
            f"full_action_space=True is not supported for {task.task_id}: ALE's full action "
            "set is Atari's; a stable-retro game acts through its discrete button combos"
        )
    else:
        actions = "discrete"
    options = {
        "game": task.game,
        "frameskip": config["frame_skip"],
        "max_pool": _int(config, "frame_skip") > 1,
        "sticky_prob": config["repeat_action_probability"],
        "max_episode_steps": config["max_episode_steps"],
        "actions": actions,
        "grayscale": bool(config["gray_scale"]),
        "resize": (config["img_height"], config["img_width"]),
        "frame_stack": config["stack_num"],
        "channels_first": True,
    }
    protocol = {
        "noop_max": config["noop_max"],
        "fire_reset": bool(config["use_fire_reset"]),
        "episodic_life": bool(config["episodic_life"]),
        "sign_reward": bool(config["reward_clip"]),
    }
    return {**options, **protocol_fields(protocol)}


def protocol_fields(protocol: Mapping[str, Any]) -> dict[str, Any]:
    """The DQN-era protocol fields this fastretro's EnvConfig has.

    A field it lacks may only be asked for as off (``noop_max=0``, ``False``); anything else
    raises, naming the EnvPool option and the missing field.
    """
    from fastretro.config import ENV_FIELDS

    names = {"noop_max": "noop_max", "fire_reset": "use_fire_reset",
             "episodic_life": "episodic_life", "sign_reward": "reward_clip"}  # fmt: skip
    out = {}
    for field, value in protocol.items():
        if field in ENV_FIELDS:
            out[field] = value
        elif value != PROTOCOL_FIELDS[field]:
            raise InvalidArgumentError(
                f"{names[field]}={value!r} is not supported by this fastretro: it needs "
                f"EnvConfig.{field}"
            )
    return out


def first_seeds(config: Mapping[str, Any]) -> int | list[int]:
    """The seeds of the first reset.

    ``seed + i`` for env ``i`` (EnvPool's rule), or ``env_seed``'s list (or ``seed`` given as
    a list, as EnvPool takes it).
    """
    n = config["num_envs"]
    seed = config["env_seed"] if config["env_seed"] is not None else config["seed"]
    if isinstance(seed, (list, tuple)) or hasattr(seed, "tolist"):
        seeds = list(seed.tolist() if hasattr(seed, "tolist") else seed)
        if len(seeds) != n or not all(_is_seed(s) for s in seeds):
            raise InvalidArgumentError(
                f"Expected seed to be an int >= 0 or a list of num_envs={n} ints >= 0, got {seed!r}"
            )
        return [int(s) for s in seeds]
    if not _is_seed(seed):
        raise InvalidArgumentError(f"Expected seed to be an int >= 0, got {seed!r}")
    return int(seed)


def batch_size(config: Mapping[str, Any]) -> int | None:
    """The pool's ``batch_size`` for EnvPool's: 0 (or num_envs) is lock-step (``None``)."""
    n, m = _int(config, "num_envs"), config["batch_size"]
    m = 0 if m is None else _int(config, "batch_size")
    if not 0 <= m <= n:
        raise InvalidArgumentError(f"Expected 0 <= batch_size <= num_envs={n}, got {m}")
    return None if m in (0, n) else m


def make_config_tuple(config: Mapping[str, Any]) -> tuple:
    """EnvPool's ``spec.config``: a namedtuple of the options."""
    return namedtuple("Config", list(config))(*config.values())


def _int(config: Mapping[str, Any], name: str) -> int:
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int) and not hasattr(value, "__index__"):
        raise InvalidArgumentError(f"Expected {name} to be an int, got {type(value).__name__}")
    return int(value)


def _is_seed(value: Any) -> bool:
    return not isinstance(value, bool) and hasattr(value, "__index__") and int(value) >= 0
