"""JERK ("Just Enough Retained Knowledge"), the Retro Contest's scripted baseline, on the pool.

A port of openai/retro-baselines agents/jerk_agent.py. An explorer runs right for 100 steps,
jumping at random (probability 0.1, the jump held 4 steps); if that earned nothing it backs off
left for 70 steps; and so on until the episode ends. It remembers the action prefix that
reached the episode's best cumulative reward. At the start of each episode, with probability
``EXPLOIT_BIAS + steps so far / budget``, it replays the best remembered sequence (by mean
score) instead, padded with no-op until the episode ends, and adds that replay's total reward
to the sequence's scores.

Vectorized: every env of a VecRetroEnv runs one explorer; explorers on the same level share
one pool of remembered solutions. The pool produces no frames at all (``observe=False``: JERK
never looks at pixels); the bookkeeping of every env runs in numba kernels
(fastretro/agents/jerk_kernels.py) over preallocated arrays, and Python only runs when an episode
ends. How the pool is driven: see "Open loop" below.

Replay path (``JerkConfig.replay_from``): the original replays the best sequence from reset
(on Airstriker a replay scores what the run that found it scored). Where the scenario's reward
and done depend only on emulator memory (the pool's workers evaluate it: ``scenario_engines ==
"fastretro"``), fastretro by default (``"auto"``) instead loads the emulator state saved where
that sequence reached its best (``VecRetroEnv(snapshot_best=True)``) and explores on from
there; the episode's return counts the prefix's reward, as a replay would. On Airstriker this
scored more than replaying from reset at equal budget (bench/README.md). Where the scenario
keeps state outside the emulator (the contest's Lua reward script; stable-retro's save states
do not carry it), it replays from reset as the original. ``"reset"`` forces the original's way.
The run reports which path ran (``replay_path``).

Open loop (the default): between two decisions JERK's actions are fixed (a move's are drawn at
its start, a replay's are the remembered sequence), so the parent hands each env a whole move
or replay and each worker runs it step after step without a round trip. By default
(``JerkConfig.deterministic``) the pool runs in lock-step rounds (``step_sequences``): every
env runs its stretch, then the agent accounts for all of them in env order, so that a seed
gives the same run bit for bit (each explorer draws from its own stream). ``deterministic=False``
(``--async``) lets each env go on as soon as its stretch is over (``send_sequences``; an exploit
episode that goes on from a saved state loads it with ``VecRetroEnv.async_restore`` first): no
env waits for another, but the order in which explorers share solutions depends on timing.

Budget: the contest scores the mean reward of the episodes that end within the budget. With
several explorers the budget is split, each cuts an episode short at the end (long episodes
are the likeliest to be cut, and on Airstriker long episodes score most), and the first episode
of each explores, so the default is one explorer, as the original (bench/bench_jerk_parity.py).

Run: ``fastretro jerk --game G [--state S] [--num-envs N] [--timesteps T] [--seed K]
[--replay-from auto|state|reset] [--async] [--per-step] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from fastretro import contest
from fastretro.agents import jerk_kernels as k
from fastretro.config import EnvConfig
from fastretro.errors import FastRetroError, InvalidArgumentError

if TYPE_CHECKING:
    from fastretro.runtime.pool import VecRetroEnv
    from fastretro.runtime.snapshots import Snapshot

#: What "forward", "back" and "jump" press, per game (other games: pass a profile).
PROFILES = {
    "SonicTheHedgehog-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    "SonicTheHedgehog2-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    "SonicAndKnuckles3-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
    # Airstriker scrolls by itself: "forward" moves the ship right, "jump" fires.
    "Airstriker-Genesis-v0": {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["B"]},
}
#: Any other Atari 2600 game: the joystick's right and left, and its button.
ATARI_PROFILE = {"forward": ["RIGHT"], "back": ["LEFT"], "jump": ["BUTTON"]}


def profile_of(game: str) -> dict | None:
    """The JERK profile of ``game``: its own, the generic Atari 2600 one, or ``None``."""
    if game in PROFILES:
        return PROFILES[game]
    return ATARI_PROFILE if game.endswith("-Atari2600-v0") else None


@dataclass
class JerkConfig:
    """JERK's settings; the defaults are the original's constants."""

    TOTAL_TIMESTEPS: int = 1_000_000
    """The exploit schedule's horizon, and the default budget (the original's 1e6 per level)."""
    EXPLOIT_BIAS: float = 0.25
    """Base probability of replaying the best sequence at an episode start."""
    forward_steps: int = 100
    """Steps of one move forward (the original's move(env, 100))."""
    back_steps: int = 70
    """Steps of a back-off after a forward move that earned nothing (move(env, 70, left))."""
    jump_prob: float = 0.1
    """Probability of starting a jump on a step where the jump button is not held."""
    jump_repeat: int = 4
    """Steps a jump holds the button."""
    profile: dict = field(default_factory=dict)
    """Button combos of "forward", "back" and "jump"; default: PROFILES[game]."""
    seed: int = 0
    """Seeds the explorers' draws and the pool's sticky frames (independent streams)."""
    deterministic: bool = True
    """Run the explorers in lock-step (every env runs its stretch, then all are accounted for
    in env order), so that a seed gives the same run bit for bit. ``False``: each env goes on
    as soon as its stretch is over (async; faster with several envs, but the order in which
    explorers share solutions, and so the run, depends on timing)."""
    replay_from: str = "auto"
    """Where an exploit episode starts: ``"auto"`` (the default: ``"state"`` where sound, else
    ``"reset"``), ``"state"`` (load the state saved at the end of the best sequence and explore
    on) or ``"reset"`` (replay it from reset, then no-op: the original). On Airstriker going on
    from a state scored more than replaying from reset at equal budget (bench/README.md)."""

    def check(self) -> None:
        """Raise InvalidArgumentError on a value the algorithm cannot use."""
        for name in ("TOTAL_TIMESTEPS", "forward_steps", "back_steps", "jump_repeat"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
        for name in ("EXPLOIT_BIAS", "jump_prob"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise InvalidArgumentError(f"Expected {name} in [0, 1], got {value!r}")
        if self.replay_from not in ("auto", "state", "reset"):
            raise InvalidArgumentError(
                f"Expected replay_from 'auto', 'state' or 'reset', got {self.replay_from!r}"
            )


def jerk_actions(profile: dict) -> list[list[str]]:
    """The pool's action set, in the kernels' order: no-op, fwd, fwd+jump, back, back+jump."""
    try:
        fwd, back, jump = profile["forward"], profile["back"], profile["jump"]
    except KeyError as exc:
        raise InvalidArgumentError(
            f"Expected a JERK profile with 'forward', 'back' and 'jump', got {profile!r}"
        ) from exc
    return [[], list(fwd), list(fwd) + list(jump), list(back), list(back) + list(jump)]


class Solutions:
    """The remembered sequences of one level: actions, every score they got, their end states."""

    def __init__(self) -> None:
        self.sequences: list[np.ndarray] = []
        self.score_sums: list[float] = []
        self.score_counts: list[int] = []
        self.snapshots: list[Snapshot | None] = []  # state compressed: ~1 MB -> ~12 KB
        self.order = np.zeros(0, np.int64)  # the original's list order, kept between sorts

    def add(self, actions: np.ndarray, score: float, snapshot: Snapshot | None = None) -> None:
        """Remember a new sequence with its first score (and the state where it ends)."""
        self.order = np.append(self.order, len(self.sequences))
        self.sequences.append(actions.copy())
        self.score_sums.append(score)
        self.score_counts.append(1)
        if snapshot is not None:
            snapshot = replace(snapshot, state=zlib.compress(snapshot.state, 1))
        self.snapshots.append(snapshot)

    def snapshot(self, index: int) -> Snapshot | None:
        """The state where sequence ``index`` ends, ready to restore; None if not kept."""
        snap = self.snapshots[index]
        return None if snap is None else replace(snap, state=zlib.decompress(snap.state))

    def best(self) -> int:
        """Index of the sequence with the highest mean score, ties broken as the original."""
        k.sort_by_mean_into(
            self.order, np.asarray(self.score_sums, float), np.asarray(self.score_counts, float)
        )
        return int(self.order[-1])

    def crc32(self) -> int:
        """A checksum of every sequence and its scores: two runs that agree on it agree."""
        crc = 0
        for seq, total, count in zip(self.sequences, self.score_sums, self.score_counts):
            crc = zlib.crc32(np.ascontiguousarray(seq, np.int64).tobytes(), crc)
            crc = zlib.crc32(np.array([total, count], np.float64).tobytes(), crc)
        return crc

    def score(self, index: int, value: float) -> None:
        """Add a replay's score to sequence ``index``."""
        self.score_sums[index] += value
        self.score_counts[index] += 1


class JerkAgent:
    """JERK explorers for every env of a pool, behind the small agent interface of eval.

    ``act`` gives every env's next action (indices into :func:`jerk_actions`), ``observe`` takes
    the step's rewards and episode ends; the pool must reset ended envs within the step
    (``autoreset_mode="same_step"``). ``fastretro eval --agent jerk`` uses it directly, with
    ``env_options`` (the action set of the shipped profiles, no frames).

    Replay from saved states: give ``snapshots`` (a pool's ``best_snapshot``); the agent then
    takes each ended episode's best state, and an exploit episode starts by loading one:
    after ``observe``, pass ``pending_restores`` to the pool's ``restore`` (``async_restore``
    in async mode) and clear it.

    Args:
        observation_space: unused (JERK never looks).
        action_space: the pool's batched action space; its length is the number of envs.
        config: the settings; default JerkConfig().
        horizon: the longest episode, for the preallocated action histories.
        snapshots: ``env_id -> Snapshot`` of the episode that env just ended (a pool's
            ``best_snapshot``); ``None``: replay from reset.
    """

    env_options = {
        "actions": jerk_actions(PROFILES["SonicTheHedgehog-Genesis-v0"]),
        "observe": False,
    }

    def __init__(
        self,
        observation_space,
        action_space,
        config: JerkConfig | None = None,
        horizon: int = contest.MAX_EPISODE_STEPS,
        snapshots=None,
    ) -> None:
        self.config = config = config or JerkConfig()
        config.check()
        n = self.num_envs = len(action_space.nvec) if hasattr(action_space, "nvec") else 1
        # One stream per explorer, apart from the pool's: the pool seeds env i's sticky frames
        # with default_rng(seed + i), and default_rng(seed) here would make env 0's sticky
        # draws the explorers' jump draws. Per explorer, so that what one draws does not
        # depend on when the others finished their moves.
        streams = np.random.SeedSequence(config.seed).spawn(1)[0].spawn(n)
        self.rngs = [np.random.default_rng(stream) for stream in streams]
        self.mode = np.full(n, k.MODE_FORWARD, np.int64)
        self.steps_left = np.full(n, config.forward_steps, np.int64)
        self.jump_left = np.zeros(n, np.int64)
        self.move_reward = np.zeros(n)
        self.history = np.zeros((n, horizon), np.int64)
        self.t = np.zeros(n, np.int64)
        self.cumulative = np.zeros(n)
        self.best = np.full(n, -np.inf)
        self.best_t = np.zeros(n, np.int64)
        self.replay = np.zeros((n, horizon), np.int64)
        self.replay_len = np.zeros(n, np.int64)
        self.replay_pos = np.zeros(n, np.int64)
        self.replaying = np.full(n, -1, np.int64)  # the solution an env replays, -1: exploring
        self.restored = np.full(n, -1, np.int64)  # the solution an env goes on from, -1: none
        self.snapshots = snapshots
        #: ``{env_id: Snapshot}`` to load before the next step (exploit episodes from a state).
        self.pending_restores: dict[int, Snapshot] = {}
        self.restores = 0
        self.actions = np.zeros(n, np.int64)
        self.last_action = np.zeros(n, np.int64)  # what each env is running now
        self.solutions = Solutions()
        self.episode_rewards: list[float] = []
        #: Steps each ended episode ran (a restored one: from its saved state on).
        self.episode_lengths: list[int] = []
        #: How each ended episode started: "explore", "replay" or "restore".
        self.episode_kinds: list[str] = []
        self.start_t = np.zeros(n, np.int64)  # where each env's episode started (a restore: > 0)
        self.replays = 0
        self.steps = 0
        self._all = np.arange(n, dtype=np.int64)
        self._ones = np.ones(n, dtype=np.int64)
        self._acted = self._all
        for i in range(n):
            self._begin_episode(i)

    def act(self, observations, envs: np.ndarray | None = None) -> np.ndarray:
        """The next action of every env, or of ``envs`` (a batch from an async pool's recv).

        Returns a preallocated array: copy it to keep it.
        """
        envs = self._all if envs is None else np.asarray(envs, np.int64)
        c = self.config
        out = self.actions[: len(envs)]
        k.jerk_plan_into(  # a stretch of one step for each env
            envs,
            self._ones[: len(envs)],
            self.mode,
            self.jump_left,
            self.replay,
            self.replay_len,
            self.replay_pos,
            self._draws(envs, self._ones[: len(envs)]),
            c.jump_prob,
            c.jump_repeat,
            out[:, None],
        )
        self.last_action[envs] = out
        self._acted = envs
        return out

    def observe(self, rewards, terminated, truncated, envs: np.ndarray | None = None) -> None:
        """Account for the step of the envs last acted for (or ``envs``).

        At an episode end, remember the episode's best prefix (or score the replayed one), then
        start the env's next episode.
        """
        envs = self._acted if envs is None else np.asarray(envs, np.int64)
        self.observe_sequences(
            envs,
            self.last_action[envs][:, None],
            np.asarray(rewards, float)[:, None],
            self._ones[: len(envs)],
            terminated,
            truncated,
        )

    def plan(self, envs: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each env's next stretch of actions in which JERK decides nothing (run open-loop).

        The pool runs it with :meth:`VecRetroEnv.send_sequences`. A stretch is the rest of the
        env's current move (the decision to back off comes at its end) or of its replay (up to
        the episode's step limit; the episode's end stops it), cut to ``limits[j]`` steps.
        Returns ``(actions, lengths)``: ``actions[j, :lengths[j]]`` for ``envs[j]``. Give what
        ran back to :meth:`observe_sequences`.
        """
        envs = np.asarray(envs, np.int64)
        replaying = self.mode[envs] == k.MODE_REPLAY
        stretch = np.where(replaying, self.history.shape[1] - self.t[envs], self.steps_left[envs])
        lengths = np.maximum(np.minimum(stretch, limits), 1)
        c = self.config
        actions = np.zeros((len(envs), int(lengths.max())), np.int64)
        k.jerk_plan_into(
            envs,
            lengths,
            self.mode,
            self.jump_left,
            self.replay,
            self.replay_len,
            self.replay_pos,
            self._draws(envs, lengths),
            c.jump_prob,
            c.jump_repeat,
            actions,
        )
        return actions, lengths

    def _draws(self, envs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """``lengths[j]`` uniform draws from env ``envs[j]``'s stream, one row per env."""
        draws = np.ones((len(envs), int(lengths.max())))  # past a row's length: no jump
        for j, i in enumerate(envs):
            draws[j, : lengths[j]] = self.rngs[i].random(int(lengths[j]))
        return draws

    def observe_sequences(self, envs, actions, rewards, steps, terminated, truncated) -> None:
        """Account for the stretches :meth:`plan` gave ``envs``.

        ``steps[j]`` steps of them ran, with rewards ``rewards[j, s]``;
        ``terminated``/``truncated`` are those of each one's last step.
        """
        envs = np.asarray(envs, np.int64)
        done = np.asarray(terminated) | np.asarray(truncated)
        c = self.config
        k.jerk_record_sequences(
            envs,
            np.asarray(actions, np.int64),
            np.asarray(rewards, float),
            np.asarray(steps, np.int64),
            done,
            self.t,
            self.history,
            self.cumulative,
            self.best,
            self.best_t,
            self.mode,
            self.steps_left,
            self.move_reward,
            self.jump_left,
            c.forward_steps,
            c.back_steps,
        )
        self.steps += int(np.sum(steps))
        self._end_episodes(envs, done)

    def _end_episodes(self, envs: np.ndarray, done: np.ndarray) -> None:
        for j in np.flatnonzero(done):  # rare: Python only at episode ends
            i = int(envs[j])
            self.episode_rewards.append(float(self.cumulative[i]))
            self.episode_lengths.append(int(self.t[i] - self.start_t[i]))
            kind = "replay" if self.replaying[i] >= 0 else "explore"
            self.episode_kinds.append("restore" if self.restored[i] >= 0 else kind)
            if self.replaying[i] >= 0:
                self.solutions.score(int(self.replaying[i]), float(self.cumulative[i]))
            else:
                self._remember(i)
            self._begin_episode(i)

    def _remember(self, i: int) -> None:
        # An explored episode's best prefix becomes a solution. One that went on from a restored
        # state scores the solution it started from, as a replay does, and adds its own prefix
        # only if it got past that solution's end.
        j = int(self.restored[i])
        self.restored[i] = -1
        if j >= 0:
            self.solutions.score(j, float(self.cumulative[i]))
            if self.best_t[i] <= len(self.solutions.sequences[j]):
                return
        snapshot = None
        if self.snapshots is not None:
            snapshot = self.snapshots(i)
            if snapshot.episode_step != self.best_t[i]:  # the worker and the agent disagree
                raise RuntimeError(
                    f"env {i}: the pool saved its best state at step {snapshot.episode_step}, "
                    f"JERK's best prefix ends at step {self.best_t[i]}"
                )
        self.solutions.add(self.history[i, : self.best_t[i]], float(self.best[i]), snapshot)

    def _begin_episode(self, i: int) -> None:
        self.t[i], self.cumulative[i], self.best[i], self.best_t[i] = 0, 0.0, -np.inf, 0
        self.jump_left[i], self.move_reward[i], self.start_t[i] = 0, 0.0, 0
        p = self.config.EXPLOIT_BIAS + self.steps / self.config.TOTAL_TIMESTEPS
        if self.solutions.sequences and self.rngs[i].random() < p:
            j = self.solutions.best()
            seq = self.solutions.sequences[j]
            snapshot = self.solutions.snapshot(j) if self.snapshots is not None else None
            if snapshot is not None:
                # Go on from where sequence j did best: its actions are this episode's prefix.
                self.pending_restores[i] = snapshot
                self.history[i, : len(seq)] = seq
                self.t[i] = self.best_t[i] = self.start_t[i] = len(seq)
                self.cumulative[i] = self.best[i] = snapshot.episode_return
                self.mode[i], self.steps_left[i] = k.MODE_FORWARD, self.config.forward_steps
                self.replaying[i], self.restored[i] = -1, j
                self.restores += 1
                return
            self.replay[i, : len(seq)] = seq
            self.replay_len[i], self.replay_pos[i], self.replaying[i] = len(seq), 0, j
            self.mode[i] = k.MODE_REPLAY
            self.replays += 1
        else:
            self.mode[i], self.steps_left[i] = k.MODE_FORWARD, self.config.forward_steps
            self.replaying[i] = -1


#: The longest stretch an env runs open-loop. Budget handed out to one env in flight is not
#: available to the others, so a short cap keeps the last stretches of a run from leaving
#: envs idle while one finishes alone.
OPEN_LOOP_STEPS = 256


def contest_timing(game: str, state: str | None = None) -> dict:
    """The contest's frame timing and episode length, as pool options.

    Without its scenario: a JERK pool keeps the game's own unless its options name one
    (replaying from saved states needs a declarative scenario).
    """
    rules = EnvConfig.contest(game, state, scenario=None)
    return {
        "frameskip": rules.frameskip,
        "sticky_prob": rules.sticky_prob,
        "max_episode_steps": rules.max_episode_steps,
    }


def make_pool(
    game: str,
    state: str | None = None,
    num_envs: int = 1,
    *,
    profile: dict | None = None,
    batch_size: int | None = None,
    sequence_length: int = OPEN_LOOP_STEPS,
    snapshot_best: bool = False,
    **options,
) -> VecRetroEnv:
    """The pool JERK explores with, as :func:`run` and ``fastretro profile`` make it.

    The profile's button combos (:func:`jerk_actions`), no observations (JERK is blind),
    episodes that restart within the step that ends them, and the contest's frame timing and
    episode length (:func:`contest_timing`) unless ``options`` say otherwise.
    ``sequence_length``: steps a worker runs on its own from one :meth:`VecRetroEnv.send_sequences`
    (0: the parent picks every step's actions). ``profile``: default :func:`profile_of`.

    Raises:
        InvalidArgumentError: no profile for ``game``.
    """
    from fastretro.runtime.pool import VecRetroEnv

    profile = profile or profile_of(game)
    if profile is None:
        raise InvalidArgumentError(
            f"No JERK profile for {game}: pass profile={{'forward': [...], 'back': [...], "
            "'jump': [...]}} with this console's button names"
        )
    return VecRetroEnv(
        game,
        num_envs,
        state,
        actions=jerk_actions(profile),
        observe=False,
        autoreset_mode="same_step",
        batch_size=batch_size,
        snapshot_best=snapshot_best,
        sequence_length=sequence_length,
        **{**contest_timing(game, state), **options},
    )


def _check_run(num_envs, budget, open_loop: bool, async_batches: bool) -> None:
    """Raise InvalidArgumentError on :func:`run`'s arguments that do not go together."""
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise InvalidArgumentError(f"Expected num_envs >= 1, got {num_envs!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InvalidArgumentError(f"Expected timesteps to be an int >= 1, got {budget!r}")
    if open_loop and async_batches:
        raise InvalidArgumentError(
            "Expected open_loop or async_batches, not both: async_batches halves a pool that "
            "the parent steps step by step (pass open_loop=False)"
        )


def run(
    game: str,
    state: str | None = None,
    num_envs: int = 1,
    config: JerkConfig | None = None,
    progress: bool = True,
    pool_options: dict | None = None,
    timesteps: int | None = None,
    movie_dir: str | None = None,
    async_batches: bool = False,
    open_loop: bool = True,
) -> dict:
    """Run JERK on one level with ``num_envs`` explorers; return the run's figures.

    ``timesteps`` is the budget (agent steps over the whole pool); default
    ``config.TOTAL_TIMESTEPS``. The exploit probability grows with steps / TOTAL_TIMESTEPS
    either way, as in the original. With ``movie_dir``, the best remembered sequence is played
    once more at the end and recorded there as a .bk2 (with the frames' real buttons, so
    ``fastretro replay`` gives back the reward reported as ``best_movie_reward``).
    ``open_loop`` (default): JERK decides nothing within a move or a replay, so each env runs
    a whole one in its worker and the parent steps in only between them: in lock-step rounds
    (``config.deterministic``, :func:`drive_lock_step`) or each env on its own
    (:func:`drive_open_loop`). ``False``: the parent picks every step's actions, in a
    lock-step pool, or with ``async_batches`` in two halves with send/recv (which replays from
    reset). The result holds every ended episode's reward, length (steps it ran) and kind
    (``"explore"``, ``"replay"`` from reset or ``"restore"`` from a saved state).
    """
    from tqdm import tqdm

    config = config or JerkConfig()
    config.check()
    budget = config.TOTAL_TIMESTEPS if timesteps is None else timesteps
    _check_run(num_envs, budget, open_loop, async_batches)
    profile = config.profile or profile_of(game)
    if profile is None:
        raise InvalidArgumentError(
            f"No JERK profile for {game}: pass JerkConfig(profile={{'forward': [...], "
            f"'back': [...], 'jump': [...]}}) with this console's button names"
        )
    options = {**contest_timing(game, state), **(pool_options or {})}
    # Explorers are independent, so the pool can run in two halves: while one half waits for
    # its actions the other keeps emulating (no lock-step barrier).
    batch = (num_envs // 2 or None) if async_batches else None
    batch = batch if batch and batch < num_envs else None
    if open_loop:
        batch = None if config.deterministic else 1
    replay_path, why = _replay_path(
        config.replay_from, game, state, num_envs, options, async_batches
    )
    start = time.perf_counter()
    steps = 0
    with make_pool(
        game,
        state,
        num_envs,
        profile=profile,
        batch_size=batch,
        snapshot_best=replay_path == "state",
        sequence_length=OPEN_LOOP_STEPS if open_loop else 0,
        **options,
    ) as env:
        agent = JerkAgent(
            None,
            env.action_space,
            config,
            horizon=options["max_episode_steps"],
            snapshots=env.best_snapshot if replay_path == "state" else None,
        )
        bar = tqdm(total=budget, unit="step", desc="jerk", disable=not progress)
        if open_loop and config.deterministic:
            steps = drive_lock_step(env, agent, budget, config.seed, bar=bar)
        elif open_loop:
            steps = drive_open_loop(env, agent, budget, config.seed, bar=bar)
        elif env.batch_size is None:
            steps = drive_per_step(env, agent, budget, config.seed, bar=bar)
        else:
            steps = drive_async_batches(env, agent, budget, config.seed, bar=bar)
        bar.close()
    episode_rewards, solutions, replays, n = (
        agent.episode_rewards,
        agent.solutions,
        agent.replays,
        num_envs,
    )
    wall = time.perf_counter() - start
    movie = None
    if movie_dir is not None and solutions.sequences:
        movie = _record_best(
            game,
            state,
            profile,
            solutions.sequences[solutions.best()],
            options,
            movie_dir,
            config.seed,
        )
    return {
        "game": game,
        "state": state,
        "num_envs": n,
        "timesteps": steps,
        "wall_s": round(wall, 3),
        "steps_per_s": round(steps / wall, 1),
        "episodes": len(episode_rewards),
        "episode_rewards": episode_rewards,
        "episode_lengths": agent.episode_lengths,
        "episode_kinds": agent.episode_kinds,
        "mean_episode_reward": float(np.mean(episode_rewards)) if episode_rewards else None,
        "best_episode_reward": max(episode_rewards) if episode_rewards else None,
        "solutions": len(solutions.sequences),
        "solutions_crc32": solutions.crc32(),
        "replays": replays,
        "restores": agent.restores,
        "replay_path": replay_path,
        "replay_path_why": why,
        "best_movie": None if movie is None else movie[0],
        "best_movie_reward": None if movie is None else movie[1],
        "config": {key: v for key, v in asdict(config).items() if key != "profile"},
    }


def drive_per_step(env, agent: JerkAgent, budget: int, seed: int, *, bar) -> int:
    """The parent picks every step's actions in a lock-step pool; the steps taken."""
    steps, num_envs = 0, env.num_envs
    env.reset(seed=seed)
    while steps < budget:
        _, rewards, terminated, truncated, _ = env.step(agent.act(None))
        agent.observe(rewards, terminated, truncated)
        if agent.pending_restores:  # exploit episodes that go on from a saved state
            env.restore(agent.pending_restores)
            agent.pending_restores.clear()
        steps += num_envs
        bar.update(num_envs)
    return steps


def drive_async_batches(env, agent: JerkAgent, budget: int, seed: int, *, bar) -> int:
    """The parent picks every step's actions for the first envs to finish; the steps taken."""
    steps = 0
    env.async_reset(seed=seed)
    started = np.zeros(env.num_envs, bool)
    while steps < budget:
        _, rewards, terminated, truncated, infos = env.recv()
        ids = infos["env_id"]
        # Each env's first result is its reset, not a step: nothing to account for.
        s = started[ids]
        if s.any():
            agent.observe(rewards[s], terminated[s], truncated[s], ids[s])
            steps += int(s.sum())
            bar.update(int(s.sum()))
        started[ids] = True
        env.send(agent.act(None, ids).copy(), ids)
    return steps


def drive_open_loop(
    env, agent: JerkAgent, budget: int, seed: int, *, bar=None, deadline=None, watch=None
) -> int:
    """Drive an async pool (``batch_size=1``, ``sequence_length``) stretch by stretch.

    Returns the steps run: ``budget``, or fewer if ``deadline`` (``time.perf_counter``) came
    first (no stretch is sent after it; the ones running are collected). ``bar``: a tqdm bar
    to advance. ``watch``: a :class:`fastretro.runtime.stats.Stopwatch` that times the agent's
    planning as "inference" and its bookkeeping as "learning" (``fastretro profile``).
    """
    from contextlib import nullcontext

    phase = watch or (lambda name: nullcontext())
    n = env.num_envs
    env.async_reset(seed=seed)
    running = n
    stretching = np.zeros(n, bool)  # the env's next result ends a stretch (not a reset/load)
    sent = np.zeros((n, env.sequence_length), np.int64)  # the actions each env is running
    reserved = np.zeros(n, np.int64)  # budget handed to each env in flight
    steps = 0
    while running:
        _, _, terminated, truncated, infos = env.recv()
        ids = infos["env_id"]
        running -= len(ids)
        ran = stretching[ids]
        if ran.any():
            done_ids, ran_steps = ids[ran], infos["sequence_steps"][ran]
            with phase("learning"):
                agent.observe_sequences(
                    done_ids,
                    sent[done_ids],
                    infos["sequence_rewards"][ran],
                    ran_steps,
                    terminated[ran],
                    truncated[ran],
                )
            steps += int(ran_steps.sum())
            if bar is not None:
                bar.update(int(ran_steps.sum()))
        stretching[ids] = True
        reserved[ids] = 0
        restores = dict(agent.pending_restores)
        agent.pending_restores.clear()
        left = budget - steps - int(reserved.sum())
        if left <= 0 or (deadline is not None and time.perf_counter() > deadline):
            continue  # spent: collect the stretches still running
        if restores:  # exploit episodes that go on from a saved state: load it first
            env.async_restore(restores)
            loading = np.fromiter(restores, np.int64)
            stretching[loading] = False  # their next result is the load, not a stretch
            running += len(loading)
            ids = ids[~np.isin(ids, loading)]
            if not len(ids):
                continue
        go = ids[: max(1, min(len(ids), left))]
        limits = np.full(len(go), min(env.sequence_length, left // len(go)))
        with phase("inference"):
            actions, lengths = agent.plan(go, limits)
        sent[go, : actions.shape[1]] = actions
        reserved[go] = lengths
        env.send_sequences(actions, lengths, go)
        running += len(go)
    return steps


def drive_lock_step(env, agent: JerkAgent, budget: int, seed: int, *, bar=None) -> int:
    """Drive a lock-step pool (``sequence_length``) stretch by stretch, deterministically.

    Every env runs its next stretch (:meth:`VecRetroEnv.step_sequences`); the agent then
    accounts for all of them in env order, and exploit episodes that go on from a saved state
    load it (:meth:`VecRetroEnv.restore`) before the next round. Nothing depends on which
    worker finished first, so a seed gives the same run. The budget left is shared evenly
    among the envs; a round needs a step of every env, so a run stops short of ``budget`` by
    less than ``num_envs`` steps. Returns the steps run.
    """
    n = env.num_envs
    env.reset(seed=seed)
    envs = np.arange(n, dtype=np.int64)
    steps = 0
    while budget - steps >= n:
        left = budget - steps
        limits = np.full(n, min(env.sequence_length, left // n), np.int64)
        actions, lengths = agent.plan(envs, limits)
        _, _, terminated, truncated, infos = env.step_sequences(actions, lengths)
        ran = infos["sequence_steps"]
        agent.observe_sequences(
            envs, actions, infos["sequence_rewards"], ran, terminated, truncated
        )
        steps += int(ran.sum())
        if bar is not None:
            bar.update(int(ran.sum()))
        if agent.pending_restores:  # exploit episodes that go on from a saved state
            env.restore(agent.pending_restores)
            agent.pending_restores.clear()
    return steps


def _replay_path(choice, game, state, num_envs, options, async_batches) -> tuple[str, str]:
    """``("state" | "reset", why)``: where exploit episodes start, for ``replay_from=choice``."""
    from fastretro.runtime.games import resolve_all
    from fastretro.runtime.worker import scenario_plan

    if choice == "reset":
        return "reset", "replay_from='reset' (the original)"
    config = EnvConfig(game=game, state=state, scenario=options.get("scenario"))
    setups = resolve_all(config, num_envs)
    engine = options.get("scenario_engine", "auto")
    unsound = [s for s in setups if scenario_plan(s, engine) is None]
    if unsound:
        why = (
            "the scenario keeps state outside the emulator, which a save state does not "
            f"carry ({unsound[0].scenario_plan_why_not or f'scenario_engine={engine!r}'})"
        )
    elif options.get("record") is not None:
        why = "the pool records .bk2 movies, which replay from reset"
    elif async_batches:
        why = "the async-batches driver replays from reset"
    else:
        return "state", "the scenario's reward and done read emulator memory only"
    if choice == "state":
        raise InvalidArgumentError(f"Cannot replay from saved states: {why}")
    return "reset", why


def _record_best(game, state, profile, sequence, options, movie_dir, seed):
    """Play ``sequence`` (then no-op) for one episode in a recording pool: (movie, reward)."""
    import glob
    import os

    from fastretro.runtime.pool import VecRetroEnv

    total = 0.0
    with VecRetroEnv(
        game,
        1,
        state,
        actions=jerk_actions(profile),
        observe=False,
        record=[movie_dir],
        autoreset_mode="next_step",
        **options,
    ) as env:
        env.reset(seed=seed)
        for t in range(options["max_episode_steps"]):
            action = sequence[t] if t < len(sequence) else k.NOOP
            _, reward, terminated, truncated, _ = env.step(np.array([action]))
            total += float(reward[0])
            if terminated[0] or truncated[0]:
                break
    movies = sorted(glob.glob(os.path.join(movie_dir, "*.bk2")), key=os.path.getmtime)
    return movies[-1], total


def main(argv: list[str] | None = None) -> int:
    """``fastretro jerk --game G [--state S] [--num-envs N] [--timesteps T] [--seed K]``."""
    from fastretro import DEFAULT_GAME

    parser = argparse.ArgumentParser(prog="fastretro jerk", description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--state", default=None)
    parser.add_argument(
        "--num-envs",
        type=int,
        default=1,
        help="explorers sharing one budget and their solutions (1: the original's one env)",
    )
    parser.add_argument("--timesteps", type=int, default=JerkConfig.TOTAL_TIMESTEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="only the JSON line at the end")
    parser.add_argument("--movie-dir", default=None, help="record the best sequence here (.bk2)")
    parser.add_argument(
        "--per-step",
        action="store_true",
        help="the parent picks every step's actions in a lock-step pool (slower) instead of "
        "each env running whole moves in its worker",
    )
    parser.add_argument(
        "--replay-from",
        choices=("auto", "state", "reset"),
        default="auto",
        help="exploit episodes load the best sequence's saved state and explore on (state; "
        "where sound: auto, the default) or replay it from reset as the original (reset)",
    )
    parser.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="each env goes on as soon as its move is over (faster with several envs; the run "
        "then depends on timing) instead of lock-step rounds (the same seed, the same run)",
    )
    args = parser.parse_args(argv)
    config = JerkConfig(seed=args.seed, replay_from=args.replay_from, deterministic=not args.async_)
    try:
        result = run(
            args.game,
            args.state,
            args.num_envs,
            config,
            progress=not args.json,
            timesteps=args.timesteps,
            movie_dir=args.movie_dir,
            open_loop=not args.per_step,
        )
    except FastRetroError as exc:
        print(f"fastretro jerk: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
