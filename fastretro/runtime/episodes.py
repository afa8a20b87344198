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


class EpisodeStatistics:
    """The books of ``num_envs`` envs' current games.

    Args:
        num_envs: envs of the pool.
        games_span_lives: a lost life ends an episode but not the game (``episodic_life``):
            the game ends at ``game_over`` or a truncation.
        next_step_reset: the step after an end is the reset (NEXT_STEP autoreset): not a step
            of the game.
    """

    def __init__(self, num_envs: int, games_span_lives: bool, next_step_reset: bool) -> None:
        self.returns = np.zeros(num_envs)
        self.lengths = np.zeros(num_envs, np.int64)
        self.starts = np.full(num_envs, time.perf_counter())
        self.resetting = np.zeros(num_envs, bool)
        self.games_span_lives = games_span_lives
        self.next_step_reset = next_step_reset

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
