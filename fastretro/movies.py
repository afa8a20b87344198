"""``.bk2`` movies: replay one headless and report its reward, length and final info.

Recording happens in the workers (``VecRetroEnv(record=DIR)``). A replay creates one emulator,
so it always runs in a fresh subprocess: never in a process that may host a pool's parent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from fastretro.errors import InvalidArgumentError


def _replay(path: str, scenario: str | None) -> dict:
    # Runs in the subprocess: stable-retro's playback, with render_mode=None (its own script
    # opens a window and crashes without a display).
    import stable_retro

    movie = stable_retro.Movie(path)
    movie.step()
    kwargs = {"scenario": scenario} if scenario is not None else {}
    env = stable_retro.make(
        game=movie.get_game(),
        state=stable_retro.State.NONE,
        use_restricted_actions=stable_retro.Actions.ALL,
        players=movie.players,
        render_mode=None,
        **kwargs,
    )
    env.initial_state = movie.get_state()
    env.reset()
    total, frames, info, done = 0.0, 0, {}, False
    while movie.step():
        keys = [movie.get_key(b, p) for p in range(movie.players) for b in range(env.num_buttons)]
        _, reward, terminated, truncated, info = env.step(keys)
        total += float(reward)
        frames += 1
        done = bool(terminated or truncated)
    env.close()
    movie.close()
    return {
        "movie": path,
        "game": movie.get_game(),
        "reward": total,
        "frames": frames,
        "done": done,
        "info": {k: int(v) for k, v in info.items()},
    }


def replay(path: str | os.PathLike, scenario: str | None = None, timeout: float = 600.0) -> dict:
    """Replay a ``.bk2`` movie in a fresh process.

    Args:
        path: the movie.
        scenario: scenario name or ``.json`` path for the reward (default: the game's own).
        timeout: seconds before giving up.

    Returns:
        ``{"movie", "game", "reward", "frames", "done", "info"}``: the total reward, the number
        of frames, whether the scenario says the episode ended, and the final info variables.

    Raises:
        InvalidArgumentError: the file does not exist or is not a ``.bk2``.
    """
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".bk2"):
        raise InvalidArgumentError(f"Expected a .bk2 movie, got {path!r}")
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"Movie {path!r} does not exist")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_replay, path, scenario).result(timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    """``fastretro replay FILE.bk2 [--scenario S] [--json]``."""
    parser = argparse.ArgumentParser(
        prog="fastretro replay", description="Replay .bk2 movies headless; print reward, length."
    )
    parser.add_argument("movies", nargs="+", help=".bk2 files")
    parser.add_argument("--scenario", default=None, help="scenario name or .json path")
    parser.add_argument("--json", action="store_true", help="one JSON line per movie")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the movie's row of monitor.csv in a `fastretro eval` results folder",
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.movies:
        try:
            result = replay(path, args.scenario)
            if args.check:
                result["check"] = check_against_monitor(path, result)
        except (InvalidArgumentError, FileNotFoundError, RuntimeError) as exc:
            print(f"fastretro replay: {exc}", file=sys.stderr)
            status = 2
            continue
        if args.check and not result["check"]["ok"]:
            status = max(status, 1)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"{os.path.basename(path)}: reward {result['reward']:g} over "
                f"{result['frames']} frames{' (episode ended)' if result['done'] else ''}; "
                f"final info {result['info']}"
                + (f"; monitor.csv row: {result['check']}" if args.check else "")
            )
    return status


def check_against_monitor(path: str, result: dict, frameskip: int = 4) -> dict:
    """Compare a replay with its episode's row in the eval results' ``monitor.csv``.

    The movie ``LEVEL/bk2/GAME-STATE-NNNNNN.bk2`` is episode ``NNNNNN`` of ``LEVEL/monitor.csv``
    (the layout ``fastretro eval`` writes); the row's length is in agent steps of
    ``frameskip`` frames.

    Raises:
        InvalidArgumentError: no monitor.csv next to the movie's folder, or no such row.
    """
    import csv

    level = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    monitor = os.path.join(level, "monitor.csv")
    if not os.path.isfile(monitor):
        raise InvalidArgumentError(f"--check needs {monitor!r} (a `fastretro eval` results folder)")
    number = int(os.path.splitext(path)[0].rsplit("-", 1)[-1])
    with open(monitor, newline="") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    if number >= len(rows):
        raise InvalidArgumentError(f"{monitor!r} has no row for episode {number}")
    reward, length = float(rows[number]["r"]), int(rows[number]["l"])
    ok = reward == result["reward"] and length * frameskip == result["frames"]
    return {"ok": ok, "monitor_reward": reward, "monitor_steps": length}
