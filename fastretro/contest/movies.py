"""``.bk2`` movies: replay one headless and report its reward, length and final info.

Recording happens in the workers (``VecRetroEnv(record=DIR)``). A replay creates one emulator,
so it always runs in a fresh subprocess: never in a process that may host a pool's parent. A
movie is checked before stable-retro reads it (sizes, input lines, start state), and the
subprocess is killed at the timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile
import zlib

import numpy as np

from fastretro.errors import (
    FastRetroError,
    InvalidArgumentError,
    MovieError,
    MovieTimeoutError,
    RemoteTraceback,
    WorkerDiedError,
)

MAX_STATE_BYTES = 64 << 20
"""The largest start state (``Core.bin``) a movie may hold: 64 times a Genesis state (1 MB),
room for the larger consoles' cores."""

MAX_FRAMES = 1_000_000
"""The default cap on the frames a movie may hold: 4.6 hours of play at 60 fps."""

_HEADER_BYTES = 64 << 10
_LINE_BYTES = 4096  # one input line; four players of 16 buttons take 72 bytes
_LOG_BYTES_PER_FRAME = 128  # for the declared size of the input log, with room to spare
# stable-retro's letter for each button name (src/movie-bk2.cpp, s_keyNames)
_KEY_LETTERS = {
    "A": "A", "B": "B", "C": "C", "X": "X", "Y": "Y", "Z": "Z", "START": "S", "SELECT": "s",
    "MODE": "M", "UP": "U", "DOWN": "D", "LEFT": "L", "RIGHT": "R", "L": "l", "R": "r",
    "BUTTON": "B",
}  # fmt: skip


def _member_limits(max_frames: int) -> dict[str, int]:
    # The three members stable-retro's Movie reads; it never looks at any other.
    return {
        "Header.txt": _HEADER_BYTES,
        "Input Log.txt": _HEADER_BYTES + max_frames * _LOG_BYTES_PER_FRAME,
        "Core.bin": MAX_STATE_BYTES,
    }


def _open_checked(path: str, max_frames: int) -> zipfile.ZipFile:
    """The movie's zip, once the sizes its members declare are within the limits.

    Nothing is inflated here: a zip bomb is refused from its directory alone.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InvalidArgumentError(
            f"Cannot read {path!r}: not a complete .bk2 movie (truncated, or not a zip file)"
        ) from None
    try:
        members = {info.filename: info for info in zf.infolist()}
        for name, limit in _member_limits(max_frames).items():
            if name not in members:
                raise MovieError(f"{path!r} is not a .bk2 movie: it has no member {name!r}")
            size = members[name].file_size
            if size > limit:
                why = f"max_frames={max_frames}" if name == "Input Log.txt" else "the limit"
                raise MovieError(
                    f"{path!r}: its member {name!r} expands to {size} bytes, over {why} "
                    f"of {limit} bytes"
                )
    except BaseException:
        zf.close()
        raise
    return zf


def _checked_copy(path: str, copy: str, max_frames: int) -> None:
    """Check a movie's members and write the three stable-retro reads to ``copy``, stored.

    stable-retro inflates each member with libzip to the end of its data, whatever size the zip
    declares; Python's zipfile stops at the declared size and checks the CRC. So stable-retro
    plays ``copy``, which holds only bytes checked here.

    Raises:
        MovieError: a member over its limit, a header without a game, or an input line that
            is not one of the game's buttons.
        GameNotFoundError: the game or its ROM is missing.
    """
    from fastretro.runtime.games import resolve

    with _open_checked(path, max_frames) as zf, zipfile.ZipFile(copy, "w") as out:
        name = ""
        try:
            name = "Header.txt"
            header = zf.read(name)
            games = [ln[9:].strip() for ln in header.splitlines() if ln.startswith(b"GameName ")]
            if not games:
                raise MovieError(f"{path!r}: its Header.txt names no game (no GameName line)")
            game = games[-1].decode("utf-8", "replace")
            buttons = resolve(game).buttons
            out.writestr(name, header)
            name = "Input Log.txt"
            with zf.open(name) as log, out.open(name, "w") as dst:
                _copy_input_log(path, log, dst, buttons, max_frames)
            name = "Core.bin"
            with zf.open(name) as src, out.open(name, "w") as dst:
                shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise MovieError(
                f"Cannot read {path!r}: its member {name!r} is corrupt ({exc})"
            ) from None


def _copy_input_log(path, log, dst, buttons, max_frames) -> None:
    """Copy ``[Input]``, the button names, the frame lines and ``[/Input]``, checking each.

    A frame line is ``|..|`` then, for each player, one character per button (its letter when
    pressed, ``.`` when not) and ``|``: the lines stable-retro writes. stable-retro would skip
    other lines, ignore unknown letters and stop at an empty line: a log it cannot read whole
    would replay as a shorter, different movie.
    """

    def at(n):
        return f"{path!r}: line {n} of its Input Log.txt"

    def line(n):
        text = log.readline(_LINE_BYTES + 1)
        if len(text) > _LINE_BYTES:
            raise MovieError(f"{at(n)} is longer than {_LINE_BYTES} bytes")
        return text

    first = line(1)
    if first.rstrip(b"\r\n") != b"[Input]":
        raise MovieError(f"{at(1)}: expected '[Input]', got {_shown(first)}")
    keys = line(2)
    # "P1 Up|P1 Down|...|": stable-retro counts the players from these names' numbers.
    if re.fullmatch(rb"(?:P[1-9][0-9]? [^|]+\|)+", keys.rstrip(b"\r\n")) is None:
        raise MovieError(
            f"{at(2)}: expected the button names ('P1 Up|P1 Down|...|'), got {_shown(keys)}"
        )
    players = max(int(name.split(b" ", 1)[0][1:]) for name in keys.split(b"|")[:-1])
    letters = "".join(_KEY_LETTERS[b] for b in buttons if b in _KEY_LETTERS)
    width = len(letters)
    allowed = re.escape(letters + ".").encode()
    pattern = re.compile(rb"\|[^|]*\|(?:[%s]{%d}\|){%d}\r?\n?" % (allowed, width, players))
    example = "|..|" + ("." * width + "|") * players
    dst.write(first)
    dst.write(keys)
    # The first frame line is the reset's (stable-retro's recorder steps its movie on reset),
    # and its playback steps past it: a log of n frame lines replays n - 1 frames.
    frames, n = -1, 2
    while True:
        n += 1
        text = line(n)
        if not text or text.rstrip(b"\r\n") == b"[/Input]":
            dst.write(text)
            if text and line(n + 1).strip():
                raise MovieError(f"{at(n + 1)}: expected nothing after '[/Input]'")
            return
        if pattern.fullmatch(text) is None:
            raise MovieError(
                f"{at(n)}: expected a frame of {players} player(s) x {width} buttons of "
                f"{letters!r} like {example!r}, got {_shown(text)}"
            )
        frames += 1
        if frames > max_frames:
            raise MovieError(
                f"{path!r}: its Input Log.txt holds more than max_frames={max_frames} frames"
            )
        dst.write(text)


def _shown(text: bytes) -> str:
    return repr(text.rstrip(b"\r\n")[:80].decode("utf-8", "replace"))


def _replay(path: str, copy: str, scenario: str | None) -> dict:
    # Runs in the subprocess: stable-retro's playback, with render_mode=None (its own script
    # opens a window and crashes without a display).
    movie, env = _movie_env(path, copy, scenario)
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


def _movie_env(path: str, copy: str, scenario: str | None = None):
    """stable-retro's playback set-up: the movie (its checked copy), and an env at its start."""
    import stable_retro

    movie = stable_retro.Movie(copy)
    movie.step()
    kwargs = {"scenario": scenario} if scenario is not None else {}
    try:
        env = stable_retro.make(
            game=movie.get_game(),
            state=stable_retro.State.NONE,
            use_restricted_actions=stable_retro.Actions.ALL,
            players=movie.players,
            render_mode=None,
            **kwargs,
        )
    except ValueError as exc:  # "requested player is out of bounds"
        raise MovieError(
            f"{path!r}: stable-retro cannot play {movie.get_game()} with the movie's "
            f"{movie.players} player(s): {exc}"
        ) from None
    state = movie.get_state()
    # The env's reset ignores what set_state says: a state the core refuses would replay the
    # movie from power-on.
    if not env.em.set_state(state):
        own = len(env.em.get_state())
        env.close()
        raise MovieError(
            f"{path!r}: its Core.bin ({len(state)} bytes) is not a save state the "
            f"{movie.get_game()} core accepts (the core's own are {own} bytes)"
        )
    env.initial_state = state
    env.reset()
    return movie, env


def _frames(movies: list[tuple[str, str]], every: int, audio: dict | None):
    """Every ``every``-th frame the movies show, one movie after the other.

    ``movies`` holds ``(path, checked copy)`` pairs. A movie of n frames gives n // every
    frames (the reset screen is not one of them). With ``audio``, the emulator's samples of every
    frame go to ``audio["chunks"]`` and its sample rate to ``audio["rate"]``.
    """
    for path, copy in movies:
        movie, env = _movie_env(path, copy)
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


def _render(movies, out, fps, scale, every, with_audio, sheet_every, progress):
    # Runs in the subprocess. Frames go to ffmpeg through its stdin (imageio-ffmpeg), never
    # pass_fds or sockets, so this works on every platform.
    import threading

    from tqdm import tqdm

    from fastretro.contest.render import tile_frames

    # tqdm's default lock is a multiprocessing semaphore, which a render killed at its timeout
    # would leak (and the parent's resource tracker warn of); this process has one bar.
    tqdm.set_lock(threading.RLock())
    # imageio-ffmpeg puts ffmpeg in a process group of its own (so that Ctrl-C reaches only
    # Python); here it stays in this process's group, which a timeout kills whole, and which
    # Ctrl-C does not reach anyway (_in_child).
    os.environ["IMAGEIO_FFMPEG_NO_PREVENT_SIGINT"] = "1"

    gif = out.lower().endswith(".gif")
    audio = {"chunks": [], "rate": None} if (with_audio and not gif) else None
    frames_iter = _frames(movies, every, audio)
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


def _in_child(conn, fn, args) -> None:
    # Runs in the subprocess: the result, or the exception with its traceback, goes to the parent.
    # Its own process group, so that a timeout kills what it starts too (a render's ffmpeg).
    if hasattr(os, "setsid"):
        os.setsid()
    try:
        message = ("ok", fn(*args), None)
    except BaseException as exc:  # noqa: BLE001 - everything crosses to the parent
        message = ("error", exc, traceback.format_exc())
    try:
        conn.send(message)
    except Exception:  # noqa: BLE001 - an exception that does not pickle
        conn.send(("error", RuntimeError(repr(message[1])), message[2]))
    conn.close()


def _run(fn, args: tuple, deadline: float, timeout: float, what: str):
    """``fn(*args)`` in a fresh spawned process, killed at ``deadline`` (``time.monotonic()``).

    ``timeout`` is the caller's, for the message: the checks of the movies count in it.

    A ``ProcessPoolExecutor`` cannot do this: its ``result(timeout)`` raises, and then leaving
    the pool waits for the task to end.

    Raises:
        MovieTimeoutError: past ``timeout`` (the process is killed).
        WorkerDiedError: the process died without an answer (a crash in the emulator core).
        The exception ``fn`` raised, as the same type, with the child's traceback as its cause.
    """

    def timed_out():
        return MovieTimeoutError(f"{what} ran past timeout={timeout:g} s; its process was killed")

    if time.monotonic() >= deadline:
        raise timed_out()
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_in_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()  # so that recv sees EOF if the child dies
    message = None
    try:
        ready = multiprocessing.connection.wait(
            [recv, proc.sentinel], max(0.0, deadline - time.monotonic())
        )
        if recv in ready:
            with contextlib.suppress(EOFError):
                message = recv.recv()
    finally:
        if message is None:  # timed out, died, or interrupted
            _kill_group(proc)
        proc.join(5.0)
        if proc.is_alive():  # answered, then stuck on its way out
            proc.kill()
            proc.join(5.0)
        recv.close()
    if message is None:
        if not ready:
            raise timed_out()
        raise WorkerDiedError(
            f"{what} failed: its process died (exit code {proc.exitcode}) without an answer"
        )
    status, value, tb = message
    if status == "error":
        raise value from RemoteTraceback(tb)
    return value


def _kill_group(proc) -> None:
    # Before the child is joined: until then its pid, its group's id, cannot be reused.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (AttributeError, OSError):  # no process groups, or the child has not made its own
        proc.kill()


def _check_timeout(timeout) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgumentError(f"Expected timeout to be a number > 0, got {timeout!r}")


def _check_max_frames(max_frames) -> None:
    if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1:
        raise InvalidArgumentError(f"Expected max_frames to be an int >= 1, got {max_frames!r}")


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
    max_frames: int = MAX_FRAMES,
) -> dict:
    """Render one ``.bk2`` movie, or every movie of a folder in name order, to a video.

    Each movie is checked first, as :func:`replay` checks it.

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
        timeout: seconds before the render is stopped (its process killed).
        max_frames: the most frames one movie may hold.

    Returns:
        ``{"output", "frames", "width", "height"}``.

    Raises:
        InvalidArgumentError: no movie, a bad output suffix or a bad number.
        MovieError: a movie over a limit, or with an unusable start state or input line.
        MovieTimeoutError: the render ran past ``timeout``.
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
    _check_timeout(timeout)
    _check_max_frames(max_frames)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastretro-render-") as tmp:
        movies = []
        for i, path in enumerate(paths):
            copy = os.path.join(tmp, f"{i:06d}.bk2")
            _checked_copy(path, copy, max_frames)
            movies.append((path, copy))
        args = (movies, out, fps, scale, every, audio, sheet_every, progress)
        existed = os.path.exists(out)
        try:
            return _run(_render, args, start + timeout, timeout, f"The render of {source!r}")
        except BaseException:
            if not existed and os.path.exists(out):
                os.remove(out)  # a half-written video
            raise


def replay(
    path: str | os.PathLike,
    scenario: str | None = None,
    timeout: float = 600.0,
    max_frames: int = MAX_FRAMES,
) -> dict:
    """Replay a ``.bk2`` movie in a fresh process.

    The movie is checked before the emulator sees it: the sizes its zip declares (its start
    state at most :data:`MAX_STATE_BYTES`, its input log at most ``max_frames`` lines' worth),
    every input line against the game's buttons, and its start state against the core.
    stable-retro then reads a copy holding only the checked bytes.

    Args:
        path: the movie.
        scenario: scenario name or ``.json`` path for the reward (default: the game's own).
        timeout: seconds before the replay is stopped (its process killed).
        max_frames: the most frames the movie may hold.

    Returns:
        ``{"movie", "game", "reward", "frames", "done", "info"}``: the total reward, the number
        of frames, whether the scenario says the episode ended, and the final info variables.

    Raises:
        InvalidArgumentError: the file does not exist or is not a ``.bk2``.
        MovieError: the movie is over a limit, or has an unusable start state or input line.
        MovieTimeoutError: the replay ran past ``timeout``.
    """
    path = os.path.abspath(os.fspath(path))
    if not path.endswith(".bk2"):
        raise InvalidArgumentError(f"Expected a .bk2 movie, got {path!r}")
    if not os.path.isfile(path):
        raise InvalidArgumentError(f"Movie {path!r} does not exist")
    _check_timeout(timeout)
    _check_max_frames(max_frames)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastretro-replay-") as tmp:
        copy = os.path.join(tmp, "movie.bk2")
        _checked_copy(path, copy, max_frames)
        args = (path, copy, scenario)
        return _run(_replay, args, start + timeout, timeout, f"The replay of {path!r}")


def main(argv: list[str] | None = None) -> int:
    """``fastretro replay FILE.bk2 [--scenario S] [--json] [--timeout S] [--max-frames N]``."""
    parser = argparse.ArgumentParser(
        prog="fastretro replay", description="Replay .bk2 movies headless; print reward, length."
    )
    parser.add_argument("movies", nargs="+", help=".bk2 files")
    parser.add_argument("--scenario", default=None, help="scenario name or .json path")
    parser.add_argument("--json", action="store_true", help="one JSON line per movie")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per movie")
    parser.add_argument(
        "--max-frames", type=int, default=MAX_FRAMES, help="the most frames a movie may hold"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the movie's row of monitor.csv in a `fastretro eval` results folder",
    )
    args = parser.parse_args(argv)
    status = 0
    for path in args.movies:
        try:
            result = replay(path, args.scenario, args.timeout, args.max_frames)
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
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds in all")
    parser.add_argument(
        "--max-frames", type=int, default=MAX_FRAMES, help="the most frames a movie may hold"
    )
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
            timeout=args.timeout,
            max_frames=args.max_frames,
        )
    except FastRetroError as exc:
        print(f"fastretro render: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
