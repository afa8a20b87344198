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

import numpy as np

from fastretro.errors import FastRetroError, InvalidArgumentError


def _replay(path: str, scenario: str | None) -> dict:
    # Runs in the subprocess: stable-retro's playback, with render_mode=None (its own script
    # opens a window and crashes without a display).
    movie, env = _movie_env(path, scenario)
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


def _movie_env(path: str, scenario: str | None = None):
    """stable-retro's playback set-up: the movie, and an env reset to its start state."""
    import stable_retro

    from fastretro.runtime.games import resolve

    try:
        movie = stable_retro.Movie(path)
    except RuntimeError:
        raise InvalidArgumentError(
            f"Cannot read {path!r}: not a complete .bk2 movie (truncated, or not a zip file)"
        ) from None
    resolve(movie.get_game())  # a missing ROM: GameNotFoundError with the import command
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
    return movie, env


def _frames(paths: list[str], every: int, audio: dict | None):
    """Every ``every``-th frame the movies show, one movie after the other.

    A movie of n frames gives n // every frames (the reset screen is not one of them). With
    ``audio``, the emulator's samples of every frame go to ``audio["chunks"]`` and its sample
    rate to ``audio["rate"]``.
    """
    for path in paths:
        movie, env = _movie_env(path)
        em, nb = env.em, env.num_buttons
        if audio is not None:
            audio["rate"] = em.get_audio_rate()
        k = 0
        while movie.step():
            for p in range(movie.players):
                keys = [movie.get_key(b, p) for b in range(nb)]
                em.set_button_mask(np.array(keys, np.uint8), p)
            em.step()  # the screen and sound are all a video needs: no RAM or reward reads
            if audio is not None:
                audio["chunks"].append(em.get_audio())
            k += 1
            if k % every == 0:
                yield em.get_screen()
        env.close()
        movie.close()


def _render(paths, out, fps, scale, every, with_audio, sheet_every, progress):
    # Runs in the subprocess. Frames go to ffmpeg through its stdin (imageio-ffmpeg), never
    # pass_fds or sockets, so this works on every platform.
    from tqdm import tqdm

    from fastretro.contest.render import tile_frames

    gif = out.lower().endswith(".gif")
    audio = {"chunks": [], "rate": None} if (with_audio and not gif) else None
    frames_iter = _frames(paths, every, audio)
    first = next(frames_iter, None)
    if first is None:
        raise InvalidArgumentError(f"The movies hold fewer than every={every} frames")
    h, w = first.shape[:2]
    size = (w * scale, h * scale)
    sheet, count = [], 0
    bar = tqdm(desc="render", unit="frame", disable=not progress)
    gif_frames = []
    writer = None
    if not gif and audio is None:
        writer = _mp4_writer(out, size, fps)
    frames_for_audio = [] if audio is not None else None

    def emit(frame):
        nonlocal count
        big = frame if scale == 1 else frame.repeat(scale, 0).repeat(scale, 1)
        if writer is not None:
            writer.send(np.ascontiguousarray(big))
        elif gif:
            gif_frames.append(big)
        else:
            frames_for_audio.append(big)
        if sheet_every and count % sheet_every == 0:
            sheet.append(frame)
        count += 1
        bar.update(1)

    emit(first)
    for frame in frames_iter:
        emit(frame)
    bar.close()
    if writer is not None:
        writer.close()
    elif gif:
        from PIL import Image

        images = [Image.fromarray(f) for f in gif_frames]
        images[0].save(
            out, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    else:
        _write_with_audio(out, frames_for_audio, audio, size, fps)
    if sheet:
        import matplotlib.image

        stem = os.path.splitext(out)[0]
        matplotlib.image.imsave(f"{stem}.sheet.png", tile_frames(np.stack(sheet[:64])))
    return {"output": out, "frames": count, "width": size[0], "height": size[1]}


def _mp4_writer(out, size, fps, audio_path=None):
    """A started imageio-ffmpeg H.264 writer (frames go in through ffmpeg's stdin)."""
    import imageio_ffmpeg

    extra = {"audio_path": audio_path, "audio_codec": "aac"} if audio_path else {}
    writer = imageio_ffmpeg.write_frames(
        out,
        size,
        fps=fps,
        codec="libx264",
        macro_block_size=1,  # any frame size, no padding
        pix_fmt_out="yuv420p",
        # ultrafast: encoding keeps up with the emulator (bench/bench_render.py).
        output_params=["-preset", "ultrafast", *(["-shortest"] if audio_path else [])],
        **extra,
    )
    writer.send(None)
    return writer


def _write_with_audio(out, frames, audio, size, fps):
    import tempfile
    import wave

    rate = audio["rate"]
    samples = np.concatenate(audio["chunks"]).astype(np.int16)
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "audio.wav")
        with wave.open(wav, "wb") as wf:
            wf.setnchannels(2)
            wf.setsampwidth(2)
            wf.setframerate(int(round(rate)))
            wf.writeframes(samples.tobytes())
        writer = _mp4_writer(out, size, fps, audio_path=wav)
        for f in frames:
            writer.send(np.ascontiguousarray(f))
        writer.close()


def render(
    source: str | os.PathLike,
    out: str | os.PathLike,
    fps: int = 60,
    scale: int = 1,
    every: int = 1,
    audio: bool = False,
    sheet_every: int = 0,
    progress: bool = True,
    timeout: float = 3600.0,
) -> dict:
    """Render one ``.bk2`` movie, or every movie of a folder in name order, to a video.

    Args:
        source: a ``.bk2`` file, or a folder of them (rendered one after the other).
        out: ``.mp4`` (H.264) or ``.gif``.
        fps: frames per second of the video (the console runs at ~60).
        scale: integer upscale (nearest neighbour: pixels stay sharp).
        every: keep every ``every``-th emulator frame.
        audio: mux the emulator's sound (mp4 only).
        sheet_every: also write ``OUT.sheet.png``, a contact sheet of every N-th kept frame
            (up to 64); 0: none.
        progress: progress bar on stderr.
        timeout: seconds before giving up.

    Returns:
        ``{"output", "frames", "width", "height"}``.

    Raises:
        InvalidArgumentError: no movie, a bad output suffix or a bad number.
    """
    source = os.path.abspath(os.fspath(source))
    out = os.path.abspath(os.fspath(out))
    if os.path.isdir(source):
        paths = sorted(os.path.join(source, f) for f in os.listdir(source) if f.endswith(".bk2"))
        if not paths:
            raise InvalidArgumentError(f"No .bk2 movie in {source!r}")
    elif source.endswith(".bk2") and os.path.isfile(source):
        paths = [source]
    else:
        raise InvalidArgumentError(f"Expected a .bk2 movie or a folder of them, got {source!r}")
    if not out.lower().endswith((".mp4", ".gif")):
        raise InvalidArgumentError(f"Expected the output to end in .mp4 or .gif, got {out!r}")
    for name, value in (("fps", fps), ("scale", scale), ("every", every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"Expected {name} to be an int >= 1, got {value!r}")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(
            _render, paths, out, fps, scale, every, audio, sheet_every, progress
        ).result(timeout=timeout)


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
        except FastRetroError as exc:
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


def render_main(argv: list[str] | None = None) -> int:
    """``fastretro render FILE.bk2|DIR -o OUT.mp4|OUT.gif [--fps] [--scale] [--audio] ...``."""
    parser = argparse.ArgumentParser(
        prog="fastretro render", description="Render .bk2 movies to mp4 or gif, headless."
    )
    parser.add_argument("source", help="a .bk2 movie or a folder of them")
    parser.add_argument("-o", "--output", required=True, help="OUT.mp4 or OUT.gif")
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--scale", type=int, default=1, help="integer upscale (sharp pixels)")
    parser.add_argument("--every", type=int, default=1, help="keep every K-th frame")
    parser.add_argument("--audio", action="store_true", help="mux the emulator's sound (mp4)")
    parser.add_argument(
        "--sheet", type=int, default=0, metavar="N", help="also a contact sheet of every N-th frame"
    )
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = render(
            args.source,
            args.output,
            fps=args.fps,
            scale=args.scale,
            every=args.every,
            audio=args.audio,
            sheet_every=args.sheet,
            progress=not args.no_progress,
        )
    except FastRetroError as exc:
        print(f"fastretro render: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
