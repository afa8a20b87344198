"""Rendering speed: a 320x224 .bk2 movie to mp4 at default settings, frames encoded per second.

The movie is recorded first by plain stable-retro (in a subprocess); the timed part is
``fastretro.contest.movies.render`` end to end (replaying the movie in the emulator, grabbing each
frame, encoding through imageio-ffmpeg's ffmpeg). Prints one JSON line.

Run: ``python bench/bench_render.py [--frames 3000]``
"""

from __future__ import annotations

import argparse
import glob
import json
import multiprocessing as mp
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from fastretro import DEFAULT_GAME
from fastretro.contest.movies import render


def _record(folder: str, game: str, frames: int) -> str:
    import stable_retro

    env = stable_retro.make(game, render_mode=None, record=folder)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(frames):  # past a game over the emulator keeps running: still frames
        env.step(rng.integers(0, 2, 12))
    env.stop_record()
    env.close()
    return sorted(glob.glob(os.path.join(folder, "*.bk2")))[0]


def main() -> None:
    """Record, render (timed), print the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default=DEFAULT_GAME)
    parser.add_argument("--frames", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
            movie = ex.submit(_record, tmp, args.game, args.frames).result()
        for suffix in ("mp4", "gif"):
            start = time.perf_counter()
            result = render(movie, os.path.join(tmp, f"out.{suffix}"), progress=False)
            seconds = time.perf_counter() - start
            print(
                json.dumps(
                    {
                        "bench": "render",
                        "format": suffix,
                        "frames": result["frames"],
                        "size": [result["width"], result["height"]],
                        "seconds": round(seconds, 3),
                        "frames_per_s": round(result["frames"] / seconds, 1),
                    }
                )
            )


if __name__ == "__main__":
    main()
