"""What a pool's call returns, read out of the shared rows once the workers are done.

A lock-step call returns every env's row, its observations a read-only view of the shared ring
(a copy with ``copy=True``); an async ``recv`` returns its batch's rows as copies, since the
other envs keep writing. Where an episode ended or a worker was replaced, :class:`Results` also
settles what that changes: ``final_obs``/``final_info`` (SAME_STEP autoreset), the restarted
envs' infos, the games' books, the fresh best snapshots and the resets that disabled autoreset
makes due.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode

from fastretro.config import PoolConfig
from fastretro.runtime.buffers import PoolBuffers
from fastretro.runtime.contract import CallState, InfoRows, add_restarted
from fastretro.runtime.episodes import EpisodeStatistics
from fastretro.runtime.preprocess import copy_into
from fastretro.runtime.sequences import SequenceRows
from fastretro.runtime.snapshots import SnapshotSlots
from fastretro.runtime.supervisor import Supervisor

#: ``(obs, rewards, terminated, truncated, infos)``, gymnasium's step return.
StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


class Results:
    """A pool's results, read from its shared memory.

    Args:
        buffers: the pool's shared memory.
        info_rows: how the shared info rows become infos.
        pool_config: whether lock-step observations are copies rather than views (``copy``),
            and whether the rows whose episode ended carry its final values (SAME_STEP
            ``autoreset_mode``).
        calls: the pool's call state (an ended episode's reset may become due).
        supervisor: which envs' workers were replaced since their last result.
        snapshots: the snapshot slots with ``snapshot_best``, else ``None``.
        episodes: the games' books with ``episode_statistics``, else ``None``.
        sequences: the sequence rows with ``sequence_length``, else ``None``.
    """

    def __init__(
        self,
        buffers: PoolBuffers,
        info_rows: InfoRows,
        pool_config: PoolConfig,
        calls: CallState,
        supervisor: Supervisor,
        snapshots: SnapshotSlots | None,
        episodes: EpisodeStatistics | None,
        sequences: SequenceRows | None,
    ) -> None:
        self.a = buffers.shared.arrays
        self.stack_views, self.obs_shape = buffers.stack_views, buffers.obs_shape
        self.info_rows, self.copy = info_rows, pool_config.copy
        self.same_step = pool_config.autoreset_mode == AutoresetMode.SAME_STEP
        self.calls, self.sup = calls, supervisor
        self.snapshots, self.episodes, self.sequences = snapshots, episodes, sequences

    def observations(self, slot: int) -> np.ndarray:
        """Every env's observation in ring slot ``slot``: the read-only view, or a copy."""
        view = self.stack_views[slot]
        if not self.copy:
            return view
        out = np.empty(view.shape, np.uint8)
        copy_into(view, out)
        return out

    def infos(self, done: np.ndarray | None, ids: np.ndarray | None = None) -> dict[str, Any]:
        """Infos of every env, or of the envs ``ids`` (async batches); ``done`` is per row."""
        return self.info_rows.read(self.a, slice(None) if ids is None else ids, done)

    def lock_step(
        self,
        slot: int,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        ended: int,
    ) -> StepResult:
        """A lock-step step's return, from its collected rewards and episode ends (``ended``)."""
        if not (ended or self.sup.any_restarted):  # the common case: nothing more to account for
            if self.episodes is not None:
                self.episodes.count(self.a, slice(None), rewards, terminated, truncated)
            return self.observations(slot), rewards, terminated, truncated, self.infos(None)
        restarted = self.sup.take_restarted(slice(None))
        truncated |= restarted
        done = terminated | truncated
        self.calls.episodes_ended(done & ~restarted)
        if self.snapshots is not None:
            self.snapshots.fresh |= done & ~restarted
        infos = self.infos(done if self.same_step else None)
        add_restarted(infos, restarted)
        if self.episodes is not None:
            books = self.episodes.count(self.a, slice(None), rewards, terminated, truncated)
            self.episodes.report(infos, books)
        return self.observations(slot), rewards, terminated, truncated, infos

    def batch(
        self,
        ids: np.ndarray,
        slots: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        ended: int,
    ) -> StepResult:
        """An async batch's return: the envs ``ids``, each from its ring slot in ``slots``."""
        restarted = self.sup.take_restarted(ids)
        truncated |= restarted
        if len(self.stack_views) == 1:
            obs = self.a["obs"][ids]
        else:
            obs = np.empty((len(ids), *self.obs_shape), np.uint8)
            for j, i in enumerate(ids):
                copy_into(self.stack_views[slots[i]][i], obs[j])
        done = (terminated | truncated) if (ended or restarted.any()) else None
        if self.snapshots is not None and done is not None:
            self.snapshots.fresh[ids[done & ~restarted]] = True
        infos = self.infos(done if self.same_step else None, ids)
        infos["env_id"] = ids.astype(np.int64)
        add_restarted(infos, restarted)
        if self.episodes is not None:
            books = self.episodes.count(self.a, ids, rewards, terminated, truncated)
            self.episodes.report(infos, books)
        if self.sequences is not None:
            infos.update(self.sequences.batch_infos(ids, rewards))
        return obs, rewards, terminated, truncated, infos
