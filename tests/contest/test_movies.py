"""Recording .bk2 movies in the workers, and replaying them to the same reward."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import GAME

from fastretro import InvalidArgumentError, VecRetroEnv
from fastretro.contest.movies import replay


@pytest.mark.parametrize("backend", ["stable-retro", "libretro"])
def test_each_episode_is_a_movie_that_replays_to_its_reward(tmp_path, backend):
    # Sticky frames and 4 frames per step: the movie must hold the buttons actually applied.
    # On libretro both envs share a worker process and stable-retro replays their movies.
    steps, episode = 125, 60
    acts = np.random.default_rng(1).integers(0, 2, (steps, 2, 12), dtype=np.uint8)
    acts[:, :, 0] = 1  # keep firing (B): Airstriker scores within an episode
    returns = [[0.0], [0.0]]
    with VecRetroEnv(
        GAME,
        2,
        frameskip=4,
        sticky_prob=0.25,
        max_episode_steps=episode,
        autoreset_mode="same_step",
        record=tmp_path,
        observe=False,
        backend=backend,
        envs_per_worker=2 if backend == "libretro" else None,
    ) as env:
        env.reset(seed=3)
        for a in acts:
            _, rew, term, trunc, _ = env.step(a)
            for i in range(2):
                returns[i][-1] += rew[i]
                if term[i] or trunc[i]:
                    returns[i].append(0.0)
    for i in range(2):
        movies = sorted(glob.glob(str(tmp_path / f"env{i:03d}" / "*.bk2")))
        assert [os.path.basename(m) for m in movies] == [
            f"{GAME}-Level1-{n:06d}.bk2" for n in range(3)
        ]
        for n, movie in enumerate(movies[:2]):  # the two complete episodes
            result = replay(movie)
            assert result["frames"] == episode * 4
            assert result["reward"] == returns[i][n], (i, n)
    assert any(r > 0 for r in returns[0][:2] + returns[1][:2])  # rewards were really compared


def test_replay_cli_prints_json(tmp_path):
    with VecRetroEnv(GAME, 1, record=tmp_path, observe=False, max_episode_steps=5) as env:
        env.reset(seed=0)
        for _ in range(5):
            env.step(np.ones((1, 12), np.uint8))
    movie = sorted(glob.glob(str(tmp_path / "env000" / "*.bk2")))[0]
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "replay", movie, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["frames"] == 5 and result["game"] == GAME and "score" in result["info"]


def test_bad_record_and_replay_arguments(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"record={str(afile)!r} exists and is not a folder")
    ):
        VecRetroEnv(GAME, 1, record=afile)
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            "Expected record to be a folder path, a list of num_envs folder paths or None, got int"
        ),
    ):
        VecRetroEnv(GAME, 1, record=3)
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"Expected a .bk2 movie, got {str(afile)!r}")
    ):
        replay(afile)
    missing = str(tmp_path / "nope.bk2")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"Movie {missing!r} does not exist")):
        replay(missing)
