"""What an env is and does (:class:`EnvConfig`) and how a pool runs envs (:class:`PoolConfig`).

Both are frozen dataclasses that check themselves once, when they are made: a bad value raises
:class:`~fastretro.errors.InvalidArgumentError` naming it, before any worker starts. The same
``EnvConfig`` object travels to every worker and is what the compiled loop reads; the pool shows
it as ``env.config`` (and its own settings as ``env.pool_config``).

Presets are class methods: :meth:`EnvConfig.contest` (the 2018 Retro Contest's rules) and
:meth:`EnvConfig.atari` (Machado et al. 2018's protocol; EnvPool's and the DQN protocol beside
it). Their rules live beside their domains (``fastretro/contest/rules.py``,
``fastretro/atari/protocols.py``), which import nothing of the config or the pool; this module
imports nothing of fastretro but its errors at the top. ``replace`` makes a changed copy,
checked again.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import multiprocessing as mp
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from fastretro.errors import InvalidArgumentError

#: stable-retro's one game whose ROM it ships: every default runs without importing a ROM.
DEFAULT_GAME = "Airstriker-Genesis-v0"
SCENARIO_ENGINES = ("auto", "stable-retro")
BACKENDS = ("auto", "stable-retro", "ale", "libretro")
FAILURE_POLICIES = ("raise", "restart")
#: Where a pool's workers run (PoolConfig.workers): fastretro/runtime/threads.py for threads.
WORKER_KINDS = ("processes", "threads")
#: The named action sets (``EnvConfig.actions``); fastretro/runtime/actions.py maps each to the
#: console's buttons.
ACTION_SETS = (
    "filtered",
    "discrete",
    "multi_discrete",
    "sonic7",
    "sonic10",
    "ale_full",
    "ale_minimal",
)


@dataclass(frozen=True)
class EnvConfig:
    """What every env of a pool is and does.

    The game, frame timing, actions, observations, rewards, recording and the shortcuts its
    worker may take.

    ``game``, ``state`` and ``scenario`` take one value for every env or a tuple with one per
    env (a list is turned into a tuple). Everything else is the same for every env.
    """

    game: str | tuple[str, ...] = DEFAULT_GAME
    """A stable-retro game ID (``"Airstriker-Genesis-v0"``), or one per env."""
    state: str | None | tuple[str | None, ...] = None
    """Save state to start episodes from (name or ``.state`` path), or one per env; ``None``:
    the game's default."""
    scenario: str | None | tuple[str | None, ...] = None
    """Scenario (reward and done) name or ``.json`` path, or one per env; ``None``: the
    game's ``scenario.json``."""

    frameskip: int = 1
    """Emulator frames per agent step (>= 1). Frames are counted the EnvPool way: agent steps
    x frameskip."""
    sticky_prob: float = 0.0
    """The Retro Contest's sticky frames: on the first frame of a step, the previous action is
    repeated with this probability (seeded per env)."""
    max_episode_steps: int | None = None
    """Agent steps after which an episode is ``truncated``; ``None``: never."""

    actions: str | tuple[tuple[str, ...], ...] = "filtered"
    """The action set: ``"filtered"`` (stable-retro's MultiBinary over the buttons, filtered),
    ``"discrete"``/``"multi_discrete"`` (stable-retro's combos), ``"sonic7"``, ``"sonic10"``, or
    button combos (``[["LEFT"], ["RIGHT", "B"], []]`` or ``["LEFT", "RIGHT+B", ""]``)."""

    observe: bool = True
    """Produce observations; ``False`` grabs no frame at all (observations of shape (n, 0))."""
    grayscale: bool = False
    """ITU-R 601 luma (``cv2.cvtColor(RGB2GRAY)``), one channel."""
    resize: tuple[int, int] | None = None
    """``(height, width)`` to shrink frames to by area averaging (``cv2.INTER_AREA``)."""
    crop: tuple[int, int, int, int] | None = None
    """Pixels cut from the ``(top, bottom, left, right)`` edges before resizing."""
    max_pool: bool = False
    """Observe the pixel-wise max of the step's last two frames (needs frameskip >= 2)."""
    frame_stack: int = 1
    """Observe the last k frames on the channel axis, newest last (a view of a ring)."""
    channels_first: bool = False
    """Observations (C, H, W), as PyTorch takes them, instead of (H, W, C)."""

    reward_scale: float = 1.0
    """Multiply rewards by this."""
    clip_reward: float | None = None
    """Clip scaled rewards to ``[-clip_reward, clip_reward]``; ``None``: no clip."""
    sign_reward: bool = False
    """Rewards become their sign (-1, 0 or 1), after scaling and clipping: DQN's reward clipping
    (SB3's ``ClipRewardEnv``, EnvPool's ``reward_clip``). ``infos["reward"]`` keeps the raw
    reward whenever the reward is transformed."""
    episodic_life: bool = False
    """A lost life ends the training episode (``terminated``) while the game goes on: the next
    reset continues the same game from where it is, and only a game over starts a new one
    (SB3's ``EpisodicLifeEnv``, EnvPool's ``episodic_life``). ``infos["lives"]`` and
    ``infos["game_over"]`` say which end it was. Lives come from ALE's count on the ALE
    backend, else from the game's ``lives`` variable (data.json)."""
    noop_max: int = 0
    """Each reset runs a random number of no-op frames, uniform in ``1..noop_max`` (one fewer
    with ``fire_reset``), as EnvPool's and SB3's ``NoopResetEnv``; 0: none."""
    fire_reset: bool = False
    """Press FIRE for one frame after each reset (and each continuation after a lost life),
    for games whose action set has FIRE (Atari 2600's button), as EnvPool's
    ``use_fire_reset``; no effect on games without it."""
    episode_statistics: bool = False
    """Report each whole game's raw return, length (agent steps) and seconds as
    ``infos["episode"]`` when it ends (``final_info["episode"]`` under SAME_STEP autoreset),
    as gymnasium's ``RecordEpisodeStatistics`` under the protocol's wrappers gives it
    (fastretro/runtime/episodes.py)."""
    allow_backtracking: bool = False
    """Reward only progress beyond the episode's best return (retro-baselines'
    AllowBacktracking), before scaling and clipping."""
    per_frame_reward: bool | None = None
    """Read RAM, reward and done after every frame (True) or once per agent step (False; the
    same reward for a sum of per-frame RAM deltas, the end seen at the end of the step);
    ``None``: per step unless a Lua script computes the reward or the end."""
    scenario_engine: str = "auto"
    """Who evaluates the scenario: ``"auto"`` (the worker, from the RAM variables, where the
    scenario is declarative; stable-retro's ``update_ram`` where it is a Lua script) or
    ``"stable-retro"`` (always stable-retro)."""

    record: str | tuple[str, ...] | None = None
    """A folder: each env records every episode as a ``.bk2`` movie in ``record/envNNN/``;
    or one folder per env; ``None``: no recording."""
    snapshot_best: bool = False
    """Keep the emulator state where each episode first reaches its best return
    (``VecRetroEnv.best_snapshot``/``restore``); one save state of shared memory per env."""
    sequence_length: int = 0
    """The longest action sequence ``step_sequences``/``send_sequences`` take (0: none); needs
    ``observe=False``."""

    skip_rendering: bool = True
    """Run the frames whose picture no observation uses without drawing them, where the core
    allows it (Genesis Plus GX); RAM, rewards and observations stay the same."""
    skip_audio: bool = True
    """Run the Genesis FM chip without synthesizing its sound while its timers are stopped,
    where the core's build allows it; the game sees no difference."""
    backend: str = "auto"
    """The emulator that runs the game: ``"stable-retro"``, ``"ale"`` (ALE's Atari 2600
    emulator, for the Atari games whose ROM ale-py ships; ``pip install "fastretro[atari]"``),
    ``"libretro"`` (stable-retro's Genesis core on fastretro's own frontend, several emulators
    per process; Mega Drive games only), or ``"auto"``: ALE where it can run every env with the
    same meaning (not while recording ``.bk2`` movies, which replay on stable-retro's core),
    else libretro where it can (Mega Drive games without a Lua scenario), else stable-retro.
    The pool's ``backends`` and ``backend_why`` say which ran and why."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        for name in ("game", "state", "scenario"):
            value = getattr(self, name)
            if isinstance(value, list):
                set_(self, name, tuple(value))
        set_(self, "frameskip", _check_int("frameskip", self.frameskip, minimum=1))
        if self.max_episode_steps is not None:
            set_(
                self,
                "max_episode_steps",
                _check_int("max_episode_steps", self.max_episode_steps, minimum=1),
            )
        if not _is_number(self.sticky_prob) or not 0.0 <= self.sticky_prob <= 1.0:
            raise InvalidArgumentError(
                f"Expected sticky_prob to be a float in [0, 1], got {self.sticky_prob!r}"
            )
        set_(self, "sticky_prob", float(self.sticky_prob))
        if self.max_pool and self.frameskip < 2:
            raise InvalidArgumentError(
                f"max_pool needs at least two frames per step: expected frameskip >= 2, "
                f"got {self.frameskip}"
            )
        set_(self, "actions", _normalise_actions(self.actions))
        prep = self.preprocessing  # checks resize, crop and frame_stack
        set_(self, "resize", prep.resize)
        set_(self, "crop", None if prep.crop == (0, 0, 0, 0) else prep.crop)
        if not _is_number(self.reward_scale) or not math.isfinite(self.reward_scale):
            raise InvalidArgumentError(
                f"Expected reward_scale to be a finite number, got {self.reward_scale!r}"
            )
        set_(self, "reward_scale", float(self.reward_scale))
        if self.clip_reward is not None and (
            not _is_number(self.clip_reward) or not self.clip_reward > 0
        ):
            raise InvalidArgumentError(
                f"Expected clip_reward to be None or a number > 0, got {self.clip_reward!r}"
            )
        if self.clip_reward is not None:
            set_(self, "clip_reward", float(self.clip_reward))
        set_(self, "noop_max", _check_int("noop_max", self.noop_max, minimum=0))
        if self.backend not in BACKENDS:
            raise InvalidArgumentError(
                f"Expected backend to be one of {list(BACKENDS)}, got {self.backend!r}"
            )
        if self.scenario_engine not in SCENARIO_ENGINES:
            raise InvalidArgumentError(
                f"Expected scenario_engine to be 'auto' or 'stable-retro', got "
                f"{self.scenario_engine!r}"
            )
        if self.per_frame_reward is not None:
            set_(self, "per_frame_reward", bool(self.per_frame_reward))
        for name in (
            "observe",
            "grayscale",
            "max_pool",
            "channels_first",
            "allow_backtracking",
            "sign_reward",
            "episodic_life",
            "fire_reset",
            "episode_statistics",
            "snapshot_best",
            "skip_rendering",
            "skip_audio",
        ):
            set_(self, name, bool(getattr(self, name)))
        set_(self, "sequence_length", _check_int("sequence_length", self.sequence_length, 0))
        if self.sequence_length and self.observe:
            raise InvalidArgumentError(
                f"sequence_length={self.sequence_length} needs observe=False: the steps of a "
                "sequence run in the worker one after another, and only the last one's frame "
                "would reach the agent"
            )
        set_(self, "record", _normalise_record(self.record))

    # -- presets ----------------------------------------------------------------------------

    @classmethod
    def contest(
        cls,
        game: str | Sequence[str] = DEFAULT_GAME,
        state: str | None | Sequence[str | None] = None,
        **overrides: Any,
    ) -> EnvConfig:
        """The 2018 Retro Contest's rules; any field can be overridden.

        The ``contest`` scenario where the game has one (Sonic's: x-progress from its Lua
        script; other games keep their default), 4 frames per step with sticky probability
        0.25, and episodes cut at 4,500 steps (``fastretro/contest/rules.py``). What an agent
        observes and how it acts are the agent's choice, not the contest's: set them in
        ``overrides``.
        """
        # Deferred: the rules ask stable-retro's data which games have the contest scenario.
        from fastretro.contest.rules import contest_fields

        return cls(**contest_fields(game, state, overrides))

    @classmethod
    def atari(cls, game: str | Sequence[str], **overrides: Any) -> EnvConfig:
        """Machado et al. (2018)'s standard protocol for Atari 2600 games; any field overrides.

        Sticky actions with probability 0.25, 4 frames per step, the max of the step's last
        two frames, 84x84 gray, a stack of 4 (channels first, as EnvPool and ALE's vector env
        give them), ALE's full 18-action set, no end of episode on a lost life (the game's own
        end, from its scenario), episodes capped at 108,000 frames (27,000 steps). Runs on
        ALE's emulator where ale-py is installed (``backend="auto"``).

        Args:
            game: a stable-retro Atari 2600 game ID, its short name (``"Pong"``) or ALE's ROM
                name (``"pong"``), or one per env.
            **overrides: any other field (a change of protocol).
        """
        # Deferred: a short name becomes a game ID through stable-retro's list of games.
        from fastretro.atari.protocols import MACHADO, protocol_fields

        return cls(**protocol_fields(MACHADO, game, overrides))

    @classmethod
    def envpool_atari(cls, game: str | Sequence[str], **overrides: Any) -> EnvConfig:
        """EnvPool's Atari ``-v5`` defaults (``envpool.make("Pong-v5")``); any field overrides.

        4 frames per step with the max of the last two, 84x84 gray, a stack of 4 (channels
        first), ALE's minimal action set, no sticky actions, 1..30 no-op frames and a FIRE frame
        at each reset (for games with FIRE), no end of episode on a lost life, raw rewards, and
        episodes capped at 27,000 steps: EnvPool's ``AtariEnvFns.DefaultConfig``. Its options
        ``episodic_life`` and ``reward_clip`` are this preset's ``episodic_life`` and
        ``sign_reward``.
        """
        from fastretro.atari.protocols import ENVPOOL_V5, protocol_fields

        return cls(**protocol_fields(ENVPOOL_V5, game, overrides))

    @classmethod
    def dqn_atari(cls, game: str | Sequence[str], **overrides: Any) -> EnvConfig:
        """The DQN-era protocol of ``NoFrameskip-v4`` + SB3's ``AtariWrapper``; fields override.

        Mnih et al. (2015) as Stable-Baselines3's ``AtariWrapper`` and CleanRL's
        ``ppo_atari.py`` apply it: 1..30 no-op frames and FIRE at each reset, a lost life ends
        the training episode (``infos["game_over"]`` marks the game's own end), rewards clipped
        to their sign (``infos["reward"]`` raw), 4 frames per step with the max of the last two,
        84x84 gray, a stack of 4, ALE's minimal action set, no sticky actions, episodes capped
        at 100,000 steps (``NoFrameskip-v4``'s 400,000 frames). The no-ops and FIRE are single
        frames, as EnvPool does them.
        """
        from fastretro.atari.protocols import DQN, protocol_fields

        return cls(**protocol_fields(DQN, game, overrides))

    def replace(self, **changes: Any) -> EnvConfig:
        """A copy with ``changes`` applied, checked again."""
        _check_names(changes, ENV_FIELDS, "EnvConfig")
        return dataclasses.replace(self, **changes)

    # -- derived ----------------------------------------------------------------------------

    @functools.cached_property
    def preprocessing(self):
        """The :class:`~fastretro.runtime.preprocess.Preprocessing` of these options."""
        from fastretro.runtime.preprocess import Preprocessing

        return Preprocessing.from_options(
            self.grayscale,
            self.resize,
            self.crop,
            self.max_pool,
            self.frame_stack,
            self.channels_first,
        )

    def per_env(self, name: str, num_envs: int) -> list:
        """``game``, ``state`` or ``scenario`` for each of ``num_envs`` envs."""
        value = getattr(self, name)
        if isinstance(value, tuple):
            if len(value) != num_envs:
                raise InvalidArgumentError(
                    f"Expected {name} to be one value or a list of num_envs={num_envs} values, "
                    f"got a list of {len(value)}"
                )
            return list(value)
        return [value] * num_envs

    def record_dir(self, env: int) -> str | None:
        """Env ``env``'s movie folder, or ``None`` when not recording."""
        if self.record is None:
            return None
        if isinstance(self.record, tuple):
            return self.record[env]
        return os.path.join(self.record, f"env{env:03d}")

    def as_options(self) -> dict[str, Any]:
        """The fields as keyword options (what ``VecRetroEnv(**options)`` takes)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class PoolConfig:
    """How a pool runs its envs.

    How many, in lock-step or async batches, and what it does when a worker fails or hangs.
    """

    num_envs: int = 1
    """Emulators (each in a worker process), >= 1."""
    batch_size: int | None = None
    """Async mode (EnvPool's): ``recv`` returns the first ``batch_size`` envs to finish and
    ``send`` starts them again; ``None``: lock-step ``step``/``reset``."""
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP
    """gymnasium's ``AutoresetMode`` (or its name): NEXT_STEP, SAME_STEP (``final_obs`` and
    ``final_info`` in infos) or DISABLED (reset ended envs with a ``reset_mask``)."""
    seed: int | None = None
    """Seed of the first reset when that call gives none."""
    copy: bool = False
    """Return copies of the observations; by default a read-only view of shared memory that
    the next call overwrites."""
    workers: str = "processes"
    """Where the workers run: ``"processes"`` (default), each in a process of its own; or
    ``"threads"``, each in a thread of this process, over the same shared memory and
    handshake: the in-process transport, for debugging (a breakpoint in an emulator stops in
    your process). Threads share the GIL (no speed-up) and cannot be killed (so no
    ``"restart"``, and no ``start_method``); with stable-retro, one emulator per process,
    they run one env (ALE runs several). docs/pool.md, Transports."""
    start_method: str | None = None
    """multiprocessing start method; ``None``: "fork" on Linux, else the platform default."""
    on_worker_failure: str = "raise"
    """A dead or stuck worker: ``"raise"`` closes the pool and raises; ``"restart"`` replaces
    it (same game, state and seed), and its envs report ``truncated`` with
    ``infos["worker_restarted"]`` while the others carry on. A worker that dies again within
    ``RESTART_WINDOW_S`` of its restart raises."""
    step_timeout: float = 60.0
    """Seconds a step, reset or ``recv`` waits before raising ``WorkerTimeoutError`` (or, with
    ``"restart"``, killing and replacing the stuck worker)."""
    startup_timeout: float = 120.0
    """Seconds the constructor waits for every worker to start."""
    envs_per_worker: int | None = None
    """Envs one worker process runs; ``None``: 1 where the emulator allows one per process
    (stable-retro), else an equal share of the cores (ALE: a worker per core, so that one
    wake-up steps several emulators)."""
    spin: bool | None = None
    """Let the parent and the workers watch for each other's turn for a moment before
    sleeping: a round trip then costs microseconds instead of two wake-ups. ``None``
    (default): the workers where each has a core (they yield while they watch, so the parent
    sharing a core runs at once), the parent where it has a core of its own beside them; so a
    spinning process never takes a core from an emulator."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "num_envs", _check_int("num_envs", self.num_envs, minimum=1))
        set_(self, "autoreset_mode", _autoreset_mode(self.autoreset_mode))
        if self.batch_size is not None:
            set_(self, "batch_size", _check_int("batch_size", self.batch_size, minimum=1))
            if self.batch_size > self.num_envs:
                raise InvalidArgumentError(
                    f"Expected batch_size <= num_envs={self.num_envs}, got {self.batch_size}"
                )
            if self.autoreset_mode == AutoresetMode.DISABLED:
                raise InvalidArgumentError(
                    "Expected autoreset_mode NEXT_STEP or SAME_STEP with batch_size (async "
                    "mode), got DISABLED"
                )
        for name in ("step_timeout", "startup_timeout"):
            value = getattr(self, name)
            if not _is_number(value) or not value > 0:
                raise InvalidArgumentError(f"Expected {name} > 0 seconds, got {value!r}")
            set_(self, name, float(value))
        if self.seed is not None:
            set_(self, "seed", _check_int("seed", self.seed, minimum=0))
        if self.on_worker_failure not in FAILURE_POLICIES:
            raise InvalidArgumentError(
                "Expected on_worker_failure to be 'raise' or 'restart', got "
                f"{self.on_worker_failure!r}"
            )
        if self.workers not in WORKER_KINDS:
            raise InvalidArgumentError(
                f"Expected workers to be 'processes' or 'threads', got {self.workers!r}"
            )
        if self.workers == "threads":
            self._check_threads()
        methods = mp.get_all_start_methods()
        if self.start_method is not None and self.start_method not in methods:
            raise InvalidArgumentError(
                f"Expected start_method to be one of {methods} or None, got {self.start_method!r}"
            )
        set_(self, "copy", bool(self.copy))
        if self.spin is not None:
            set_(self, "spin", bool(self.spin))
        if self.envs_per_worker is not None:
            set_(self, "envs_per_worker", _check_int("envs_per_worker", self.envs_per_worker, 1))

    def _check_threads(self) -> None:
        if self.on_worker_failure == "restart":
            raise InvalidArgumentError(
                "Expected on_worker_failure='raise' with workers='threads', got 'restart': a "
                "thread cannot be killed, so a stuck worker thread cannot be replaced (use "
                "workers='processes' to restart workers)"
            )
        if self.start_method is not None:
            raise InvalidArgumentError(
                f"Expected start_method=None with workers='threads' (they start no process), "
                f"got {self.start_method!r}"
            )

    def replace(self, **changes: Any) -> PoolConfig:
        """A copy with ``changes`` applied, checked again."""
        _check_names(changes, POOL_FIELDS, "PoolConfig")
        return dataclasses.replace(self, **changes)

    @property
    def num_workers(self) -> int:
        """Worker processes: ``num_envs`` shared out ``envs_per_worker`` at a time."""
        return -(-self.num_envs // (self.envs_per_worker or 1))

    def worker_envs(self, worker: int) -> range:
        """The envs worker ``worker`` runs."""
        k = self.envs_per_worker or 1
        return range(worker * k, min((worker + 1) * k, self.num_envs))


ENV_FIELDS = tuple(f.name for f in dataclasses.fields(EnvConfig))
POOL_FIELDS = tuple(f.name for f in dataclasses.fields(PoolConfig))


def from_arguments(
    game, num_envs, state, scenario, config, pool, options
) -> tuple[EnvConfig, PoolConfig]:
    """A pool's two configs from ``VecRetroEnv``'s arguments, each checked once.

    ``game`` may be an :class:`EnvConfig`; ``game``, ``state`` and ``scenario`` (when not
    None) and ``options`` change the config; ``num_envs`` and the pool options change ``pool``.
    """
    if isinstance(game, EnvConfig):
        if config is not None:
            raise InvalidArgumentError("Pass the EnvConfig as game or as config=, not both")
        config, game = game, None
    if config is not None and not isinstance(config, EnvConfig):
        raise InvalidArgumentError(
            f"Expected config to be a fastretro.EnvConfig, got {type(config).__name__}"
        )
    if pool is not None and not isinstance(pool, PoolConfig):
        raise InvalidArgumentError(
            f"Expected pool to be a fastretro.PoolConfig, got {type(pool).__name__}"
        )
    env_changes, pool_changes = split_options(options)
    for name, value in (("game", game), ("state", state), ("scenario", scenario)):
        if value is not None:
            env_changes[name] = value
    if num_envs is not None:
        pool_changes["num_envs"] = num_envs
    pool_config = (pool or PoolConfig()).replace(**pool_changes) if pool_changes else pool
    pool_config = pool_config or PoolConfig()
    env_config = (config or EnvConfig()).replace(**env_changes) if env_changes else config
    return env_config or EnvConfig(), pool_config


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options of ``VecRetroEnv`` as (EnvConfig changes, PoolConfig changes).

    Raises:
        InvalidArgumentError: a name that is neither, with the closest valid names.
    """
    _check_names(options, ENV_FIELDS + POOL_FIELDS, "VecRetroEnv")
    env = {k: v for k, v in options.items() if k in ENV_FIELDS}
    pool = {k: v for k, v in options.items() if k in POOL_FIELDS}
    return env, pool


def _check_names(options: Mapping[str, Any], valid: Sequence[str], what: str) -> None:
    for name in options:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=2)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise InvalidArgumentError(
                f"Unknown option {name!r} for {what}{hint} (EnvConfig and PoolConfig list them)"
            )


def _normalise_actions(actions: Any) -> str | tuple[tuple[str, ...], ...]:
    # Only the form is checked here: button names are checked against the console's buttons
    # when the pool knows them (fastretro/runtime/actions.py).
    if isinstance(actions, str):
        if actions not in ACTION_SETS:
            raise InvalidArgumentError(
                f"Expected actions to be one of {list(ACTION_SETS)} or a list of button combos, "
                f"got {actions!r}"
            )
        return actions
    if not isinstance(actions, (list, tuple)) or not actions:
        raise InvalidArgumentError(
            f"Expected actions to be one of {list(ACTION_SETS)} or a non-empty list of button "
            f"combos, got {actions!r}"
        )
    return tuple(parse_combo(c) for c in actions)


def parse_combo(combo: str | Sequence[str]) -> tuple[str, ...]:
    """One action's buttons, from a list of names or a ``"+"``-joined string."""
    if isinstance(combo, str):
        return tuple(b for b in combo.split("+") if b)
    if isinstance(combo, (list, tuple)) and all(isinstance(b, str) for b in combo):
        return tuple(combo)
    raise InvalidArgumentError(
        f"Expected each action to be a list of button names or a '+'-joined string, got {combo!r}"
    )


def _normalise_record(record: Any) -> str | tuple[str, ...] | None:
    if record is None:
        return None
    if isinstance(record, (str, os.PathLike)):
        return os.path.abspath(os.fspath(record))
    if isinstance(record, (list, tuple)) and all(isinstance(r, (str, os.PathLike)) for r in record):
        return tuple(os.path.abspath(os.fspath(r)) for r in record)
    raise InvalidArgumentError(
        "Expected record to be a folder path, a list of num_envs folder paths or None, got "
        f"{type(record).__name__}"
    )


def _autoreset_mode(mode: AutoresetMode | str) -> AutoresetMode:
    if isinstance(mode, AutoresetMode):
        return mode
    for m in AutoresetMode:
        if isinstance(mode, str) and mode.lower().replace("_", "") in (
            m.value.lower(),
            m.name.lower().replace("_", ""),
        ):
            return m
    raise InvalidArgumentError(
        f"Expected autoreset_mode to be one of {[m.name for m in AutoresetMode]}, got {mode!r}"
    )


def _is_number(value: Any) -> bool:
    # bool is an int to Python, but True is no probability or scale anyone means.
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"Expected {name} to be an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidArgumentError(f"Expected {name} >= {minimum}, got {value}")
    return int(value)
