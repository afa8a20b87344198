"""Whole games' returns and lengths in infos, as gymnasium's ``RecordEpisodeStatistics`` gives.

Training code built on per-env wrappers (CleanRL's ``ppo_atari.py``, SB3's ``Monitor``) puts
``RecordEpisodeStatistics`` *under* the DQN-era protocol: it sees the game's raw score and only
the game's own end, not each lost life. A pool applies that protocol in its workers, so it keeps
the same books in the parent (``EnvConfig.episode_statistics``): per env, the raw return and the
agent steps since the game began, reported when the game ends as ``infos["episode"]``
(``final_info["episode"]`` under SAME_STEP autoreset), a dict of ``r`` (float64), ``l`` (int64,
agent steps) and ``t`` (float64, seconds), with ``infos["_episode"]`` saying which envs ended.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from fastretro.config import EnvConfig
from fastretro.runtime.contract import protocol_infos


class EpisodeStatistics:
    """The books of ``num_envs`` envs' current games.

    Args:
        num_envs: envs of the pool.
        games_span_lives: a lost life ends an episode but not the game (``episodic_life``):
            the game ends at ``game_over`` or a truncation.
        next_step_reset: the step after an end is the reset (NEXT_STEP autoreset): not a step
            of the game.
        same_step_reset: the ended step's values are its ``final_info`` (SAME_STEP autoreset).
        raw_rewards: the pool changes the game's reward, and keeps the raw one in the shared
            ``raw_rewards`` array.
    """

    def __init__(
        self,
        num_envs: int,
        games_span_lives: bool,
        next_step_reset: bool,
        same_step_reset: bool = False,
        raw_rewards: bool = False,
    ) -> None:
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, np.int64)
        self.starts = np.full(num_envs, time.perf_counter())
        self.resetting = np.zeros(num_envs, bool)
        self.games_span_lives = games_span_lives
        self.next_step_reset = next_step_reset
        self.same_step_reset = same_step_reset
        # The shared arrays :meth:`count` reads: the game's own reward, and its game over.
        self._rewards = "raw_rewards" if raw_rewards else None
        self._game_over = None
        if games_span_lives:
            self._game_over = "final_game_over" if same_step_reset else "game_over"

    @classmethod
    def of(
        cls, config: EnvConfig, num_envs: int, autoreset_mode: AutoresetMode
    ) -> EpisodeStatistics:
        """The books a pool of ``num_envs`` envs of ``config`` keeps."""
        return cls(
            num_envs,
            config.episodic_life,
            autoreset_mode == AutoresetMode.NEXT_STEP,
            autoreset_mode == AutoresetMode.SAME_STEP,
            "reward" in protocol_infos(config),
        )

    def new_games(self, envs: Any, reset_pending: bool = False) -> None:
        """``envs`` begin new games (a reset that starts one).

        ``reset_pending``: their next result is the reset itself (async mode), not a step.
        """
        self.returns[envs] = 0.0
        self.lengths[envs] = 0
        self.starts[envs] = time.perf_counter()
        self.resetting[envs] = reset_pending

    def step(
        self,
        envs: Any,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        game_over: np.ndarray | None,
    ) -> dict[str, Any] | None:
        """Count one step of the rows ``envs``; the ended games' entry, or ``None``.

        Args:
            envs: the rows' envs (``slice(None)`` in lock-step, ids in async batches).
            rewards: each row's raw reward.
            terminated: each row's episode end, by the game or a lost life.
            truncated: each row's episode cut by a time limit (or a worker's restart).
            game_over: each row's game over (with ``games_span_lives``), else ``None``.

        Returns:
            ``{"episode": {"r", "l", "t"}, "_episode": mask}`` over the rows, or ``None``
            when no game ended.
        """
        counted = ~self.resetting[envs]
        self.returns[envs] += np.where(counted, rewards, 0.0)
        self.lengths[envs] += counted
        done = terminated | truncated
        # (A row that did not end may hold the game over of its last end: SAME_STEP's final.)
        ended = ((game_over & done) | truncated) if self.games_span_lives else done
        self.resetting[envs] = done if self.next_step_reset else False
        if not ended.any():
            return None
        now = time.perf_counter()
        entry = {
            "r": np.where(ended, self.returns[envs], 0.0),
            "l": np.where(ended, self.lengths[envs], 0),
            "t": np.where(ended, np.round(now - self.starts[envs], 6), 0.0),
        }
        rows = np.arange(len(self.returns))[envs][ended]
        self.returns[rows] = 0.0
        self.lengths[rows] = 0
        self.starts[rows] = now
        return {"episode": entry, "_episode": ended.copy()}

    def count(
        self,
        a: dict[str, np.ndarray],
        envs: Any,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> dict[str, Any] | None:
        """:meth:`step`, with the raw rewards and game overs read from the pool's arrays ``a``."""
        raw = a[self._rewards][envs] if self._rewards else rewards
        game_over = a[self._game_over][envs].astype(bool) if self._game_over else None
        return self.step(envs, raw, terminated, truncated, game_over)

    def report(self, infos: dict[str, Any], entry: dict[str, Any] | None) -> None:
        """Add :meth:`step`'s ``entry`` where a per-env RecordEpisodeStatistics puts it.

        That is the ended step's info: ``final_info`` under SAME_STEP autoreset.
        """
        if entry is not None:
            (infos["final_info"] if self.same_step_reset else infos).update(entry)
