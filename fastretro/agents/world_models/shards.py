"""The shards: whole episodes as compressed ``.npz`` files, written by collect, read by V and M.

A shard (``shards/shard_NNNNNN.npz``) holds observations, actions, rewards, terminations and
episode ends, with the game, action set and frame size they came from, which every reader
checks against the run's settings.
"""

from __future__ import annotations

import glob
import json
import os
import zipfile
from collections.abc import Sequence

import numpy as np

from fastretro.agents.world_models.config import WorldModelsConfig, jsonable
from fastretro.errors import InvalidArgumentError


def shard_paths(run_dir: str) -> list[str]:
    """The run folder's shards, in the order they were written."""
    return sorted(glob.glob(os.path.join(run_dir, "shards", "shard_*.npz")))


def _check_shard(path: str, data, cfg: WorldModelsConfig) -> None:
    """Raise InvalidArgumentError if a shard came from another game, frame size or action set."""
    game = str(data["game"])
    if game != cfg.game:
        raise InvalidArgumentError(
            f"{path!r} holds frames of {game!r}, not of {cfg.game!r}: collect into another "
            "run folder"
        )
    h, w, c = (int(v) for v in data["frame_shape"])
    s = cfg.frame_size
    if (h, w, c) != (s, s, 3):
        raise InvalidArgumentError(
            f"{path!r} holds {h}x{w}x{c} frames, not {s}x{s}x3 (frame_size={s}): collect "
            "into another run folder"
        )
    actions = json.loads(str(data["action_set"]))
    if actions != jsonable(cfg.resolved_actions()):
        raise InvalidArgumentError(
            f"{path!r} was collected with the action set {actions!r}, not "
            f"{jsonable(cfg.resolved_actions())!r}: collect into another run folder"
        )


def shard_episodes(path: str, cfg: WorldModelsConfig) -> int:
    """The number of whole episodes in a shard, after checking it belongs to this run."""
    with np.load(path, allow_pickle=False) as data:
        _check_shard(path, data, cfg)
        return int(data["episodes"])


def _savez_fast(f, **arrays) -> None:
    """``np.savez_compressed`` at zlib level 1, which ``np.load`` reads as usual.

    The parent compresses on the emulators' cores: numpy's level 6 takes ~2.8x the time for
    shards ~1.7x smaller on Airstriker (``fastretro world-models collect --json``: frames/s with
    and without writing).
    """
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def write_shard(path: str, episodes: list[dict], cfg: WorldModelsConfig, n_actions: int) -> int:
    """Whole episodes as one compressed shard, written atomically; returns its step count."""
    cat = {k: np.concatenate([e[k] for e in episodes]) for k in episodes[0]}
    ends = np.zeros(len(cat["actions"]), bool)
    ends[np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        _savez_fast(
            f,
            observations=cat["observations"],
            actions=cat["actions"].astype(np.int16),
            rewards=cat["rewards"].astype(np.float32),
            terminated=cat["terminated"],
            episode_ends=ends,
            episodes=np.int64(len(episodes)),
            game=np.str_(cfg.game),
            state=np.str_(cfg.state or ""),
            action_set=np.str_(json.dumps(cfg.resolved_actions())),
            n_actions=np.int64(n_actions),
            frame_shape=np.array(cat["observations"].shape[1:], np.int64),
            frameskip=np.int64(cfg.frameskip),
        )
    os.replace(tmp, path)
    return len(ends)


def load_shards(run_dir: str, cfg: WorldModelsConfig, keys: Sequence[str]) -> dict:
    """``keys`` of every shard, concatenated in shard order, after checking each shard.

    Raises:
        InvalidArgumentError: no shard, or a shard of another game, frame size or action set.
    """
    paths = shard_paths(run_dir)
    if not paths:
        raise InvalidArgumentError(
            f"No shards in {os.path.join(run_dir, 'shards')!r}: run 'fastretro world-models "
            "collect' first"
        )
    parts: dict[str, list] = {k: [] for k in keys}
    for p in paths:
        with np.load(p, allow_pickle=False) as data:
            _check_shard(p, data, cfg)
            for k in keys:
                parts[k].append(data[k])
    return {k: np.concatenate(v) for k, v in parts.items()}
