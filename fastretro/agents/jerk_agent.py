"""JERK's explorers: the profiles, the config and the vectorized agent (:class:`JerkAgent`).

What the agent decides and remembers (moves, jumps, back-offs, the solutions it replays), in
numba kernels over every env at once (:mod:`fastretro.agents.jerk_kernels`). The pool it acts
on, the run and the command are in :mod:`fastretro.agents.jerk`, whose docstring tells the
algorithm.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from fastretro import contest
from fastretro.agents import jerk_kernels as k
from fastretro.errors import InvalidArgumentError

if TYPE_CHECKING:
    from fastretro.runtime.snapshots import Snapshot

__all__ = [
    "ATARI_PROFILE",
    "PROFILES",
    "DrawStream",
    "JerkAgent",
    "JerkConfig",
    "Solutions",
    "jerk_actions",
    "profile_of",
]


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
    """Seeds the explorers' draws (explorer i: Python's ``random.Random(seed + i)``, as the
    original's ``random.seed``) and the pool's sticky frames (env i: ``default_rng(seed + i)``,
    a generator of another kind: independent streams)."""
    deterministic: bool = True
    """Run the explorers in lock-step (every env runs its stretch, then all are accounted for
    in env order), so that a seed gives the same run bit for bit. ``False``: each env goes on
    as soon as its stretch is over (async; faster with several envs, but the order in which
    explorers share solutions, and so the run, depends on timing)."""
    replay_from: str = "reset"
    """Where an exploit episode starts: ``"reset"`` (the default: replay the best sequence from
    reset, then no-op, as the original), ``"state"`` (load the state saved at the end of the
    best sequence and explore on from there) or ``"auto"`` (``"state"`` where sound, else
    ``"reset"``). Going on from a state is a change to the algorithm that has not been shown to
    score at least what the original scores (bench/agents.md), so it is not the default."""

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


class DrawStream:
    """One explorer's uniform draws: Python's ``random.Random(seed)``, taken as the original.

    The original draws ``random.random()`` at each episode start (once solutions exist) and on
    each moving step where the jump button is not held, nothing else. An explorer that draws
    the same values in the same places plays the same run, so explorer 0 of ``seed`` plays the
    original's run of ``random.seed(seed)`` draw for draw (on the same sticky frames).
    :meth:`peek` shows the next values without taking them (a stretch is planned before it
    runs, and an episode's end may cut it short); :meth:`take` takes the ones it used.
    """

    #: Values made at a time: Python's generator runs ~30 ns a value, so ~0.1 ms per refill.
    CHUNK = 4096

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._values = np.zeros(0)
        self._at = 0
        self.taken = 0  # values taken so far

    def peek(self, n: int) -> np.ndarray:
        """The next ``n`` values, not taken; a view, valid until the next call."""
        if self._at + n > len(self._values):
            fresh = max(n, self.CHUNK)
            made = np.fromiter((self._rng.random() for _ in range(fresh)), float, fresh)
            self._values = np.concatenate([self._values[self._at :], made])
            self._at = 0
        return self._values[self._at : self._at + n]

    def take(self, n: int) -> None:
        """Take the next ``n`` values (the first ``n`` that :meth:`peek` showed)."""
        assert 0 <= n <= len(self._values) - self._at, "take more than was peeked"
        self._at += n
        self.taken += n

    def random(self) -> float:
        """Take the next value (``random.random()``)."""
        value = float(self.peek(1)[0])
        self.take(1)
        return value


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
        # One stream per explorer, so that what one draws does not depend on when the others
        # finished their moves; Python's Mersenne Twister, as the original's `random`, apart
        # from the pool's sticky frames (env i: PCG64 default_rng(seed + i)).
        self.streams = [DrawStream(config.seed + i) for i in range(n)]
        self._used: list[np.ndarray] = [np.zeros(0, np.int64)] * n  # draws of the stretch planned
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
        out = self.actions[: len(envs)]
        self._plan_into(envs, self._ones[: len(envs)], out[:, None])  # a stretch of one step
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
        actions = np.zeros((len(envs), int(lengths.max())), np.int64)
        self._plan_into(envs, lengths, actions)
        return actions, lengths

    def _plan_into(self, envs: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
        """Plan ``lengths[j]`` actions of env ``envs[j]`` into ``out[j]``; note their draws.

        A step takes a draw only where the original's would (see :class:`DrawStream`): the
        kernel is shown enough of each stream for a stretch that draws on every step, and
        :meth:`observe_sequences` takes those that the steps which ran used.
        """
        c = self.config
        width = int(lengths.max())
        draws = np.ones((len(envs), width))
        for j, i in enumerate(envs):
            draws[j, : lengths[j]] = self.streams[i].peek(int(lengths[j]))
        used = np.zeros((len(envs), width), np.int64)
        k.jerk_plan_into(
            envs,
            lengths,
            self.mode,
            self.jump_left,
            self.replay,
            self.replay_len,
            self.replay_pos,
            draws,
            c.jump_prob,
            c.jump_repeat,
            out,
            used,
        )
        for j, i in enumerate(envs):
            self._used[i] = used[j, : lengths[j]]

    def observe_sequences(self, envs, actions, rewards, steps, terminated, truncated) -> None:
        """Account for the stretches :meth:`plan` gave ``envs``.

        ``steps[j]`` steps of them ran, with rewards ``rewards[j, s]``;
        ``terminated``/``truncated`` are those of each one's last step.
        """
        envs = np.asarray(envs, np.int64)
        steps = np.asarray(steps, np.int64)
        done = np.asarray(terminated) | np.asarray(truncated)
        for j, i in enumerate(envs):  # the draws of the steps that ran; an episode end wastes none
            assert steps[j] <= len(self._used[i]), f"env {i} ran more steps than were planned"
            if steps[j] > 0:
                self.streams[i].take(int(self._used[i][steps[j] - 1]))
            self._used[i] = self._used[i][:0]
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
        if self.solutions.sequences and self.streams[i].random() < p:
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
