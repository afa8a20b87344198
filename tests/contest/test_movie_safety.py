"""A .bk2 movie is checked before it is played: its sizes, its start state, its input lines.

The movies here are a real one recorded by the pool, with one member rewritten.
"""

from __future__ import annotations

import glob
import json
import multiprocessing as mp
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
from conftest import GAME

from fastretro import VecRetroEnv
from fastretro.contest.movies import MAX_STATE_BYTES, render, replay
from fastretro.errors import FastRetroError, MovieError, MovieTimeoutError

FRAMES = 20
ZEROS = 300_000_000  # the zip bomb's start state: 300 MB of zeros, 300 KB deflated
KEYS = "P1 Z|P1 X|P1 Y|P1 C|P1 Right|P1 Left|P1 Down|P1 Up|P1 Start|P1 Mode|P1 A|P1 B|"


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("rec")
    with VecRetroEnv(GAME, 1, record=folder, observe=False, max_episode_steps=FRAMES) as env:
        env.reset(seed=0)
        for _ in range(FRAMES):
            env.step(np.ones((1, 12), np.uint8))
    return sorted(glob.glob(str(folder / "env000" / "*.bk2")))[0]


def _members(movie: str) -> dict[str, bytes]:
    with zipfile.ZipFile(movie) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def _with_zeros(movie: str, path, head: bytes = b"") -> str:
    """The movie with Core.bin = ``head`` + 300 MB of zeros, deflated a MB at a time."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in _members(movie).items():
            if name != "Core.bin":
                zf.writestr(name, data)
        with zf.open("Core.bin", "w") as f:
            f.write(head)
            for _ in range(ZEROS >> 20):
                f.write(bytes(1 << 20))
            f.write(bytes(ZEROS - (ZEROS >> 20 << 20)))
    return str(path)


def _with_log(movie: str, path, lines: list[str]) -> str:
    members = _members(movie)
    members["Input Log.txt"] = "\n".join(lines).encode()
    return _write(path, members)


def _frame_lines(movie: str) -> list[str]:
    return _members(movie)["Input Log.txt"].decode().splitlines()


def _cli_with_peak_rss(*args) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``fastretro ARGS`` from a fresh Python; also the peak RSS (MB) of all it started."""
    code = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([p.returncode, p.stdout, p.stderr, rss]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, sys.executable, "-m", "fastretro", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rc, stdout, stderr, rss = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, rc, stdout, stderr), rss


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fastretro", *args], capture_output=True, text=True, timeout=300
    )


def _assert_one_line_error(proc, command: str, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"fastretro {command}: {message}"


def test_a_zip_bomb_start_state_is_refused_from_its_declared_size(movie, tmp_path):
    bomb = _with_zeros(movie, tmp_path / "bomb.bk2")
    assert os.path.getsize(bomb) < 2_000_000
    message = (
        f"{bomb!r}: its member 'Core.bin' expands to {ZEROS} bytes, over the limit "
        f"of {MAX_STATE_BYTES} bytes"
    )
    with pytest.raises(MovieError, match=re.escape(message)):
        replay(bomb)
    with pytest.raises(MovieError, match=re.escape(message)):
        render(bomb, tmp_path / "bomb.mp4", progress=False)
    proc, rss = _cli_with_peak_rss("replay", bomb)
    _assert_one_line_error(proc, "replay", message)
    assert rss < 250, f"the replay reached {rss:.0f} MB"


def test_a_start_state_longer_than_its_zip_declares_is_read_to_the_declared_size(movie, tmp_path):
    # libzip (stable-retro's reader) inflates to the end of the data whatever the zip declares;
    # here it declares the real state's size and CRC, and 300 MB of zeros follow.
    state = _members(movie)["Core.bin"]
    liar = _with_zeros(movie, tmp_path / "liar.bk2", head=state)
    data = bytearray(open(liar, "rb").read())
    whole = struct.pack("<I", zlib.crc32(state + bytes(ZEROS)))
    hits = [m.start() for m in re.finditer(re.escape(whole), data)]
    assert len(hits) == 2  # the local header and the central directory
    for i in hits:
        assert data[i + 8 : i + 12] == struct.pack("<I", len(state) + ZEROS)
        data[i : i + 4] = struct.pack("<I", zlib.crc32(state))
        data[i + 8 : i + 12] = struct.pack("<I", len(state))
    with open(liar, "wb") as f:
        f.write(data)
    proc, rss = _cli_with_peak_rss("replay", liar, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["frames"] == FRAMES
    assert rss < 250, f"the replay reached {rss:.0f} MB"


@pytest.fixture(scope="module")
def long_movie(movie, tmp_path_factory) -> str:
    # 20,000 frames: tens of seconds of replay, far past the 1 s timeouts below.
    lines = _frame_lines(movie)
    path = tmp_path_factory.mktemp("long") / "long.bk2"
    return _with_log(movie, path, lines[:2] + [lines[2]] * 20_000 + ["[/Input]"])


def test_a_replay_past_its_timeout_is_killed(long_movie):
    start = time.monotonic()
    with pytest.raises(
        MovieTimeoutError,
        match=re.escape(f"The replay of {long_movie!r} ran past timeout=1 s; its process was"),
    ):
        replay(long_movie, timeout=1.0)
    assert time.monotonic() - start < 2.0
    assert mp.active_children() == []  # killed and joined, not left running
    assert issubclass(MovieTimeoutError, FastRetroError)


def test_a_render_past_its_timeout_is_killed(long_movie, tmp_path):
    pytest.importorskip("imageio_ffmpeg", reason="rendering needs imageio-ffmpeg")
    start = time.monotonic()
    with pytest.raises(
        MovieTimeoutError,
        match=re.escape(f"The render of {long_movie!r} ran past timeout=1 s; its process was"),
    ):
        render(long_movie, tmp_path / "long.mp4", progress=False, timeout=1.0)
    assert time.monotonic() - start < 2.0
    assert mp.active_children() == []


@pytest.mark.parametrize("command", ["replay", "render"])
def test_the_cli_says_a_timeout_in_one_line(long_movie, tmp_path, command):
    if command == "render":
        pytest.importorskip("imageio_ffmpeg", reason="rendering needs imageio-ffmpeg")
    extra = ["-o", str(tmp_path / "x.mp4"), "--no-progress"] if command == "render" else []
    proc = _cli(command, long_movie, *extra, "--timeout", "1")
    what = "replay" if command == "replay" else "render"
    _assert_one_line_error(
        proc,
        command,
        f"The {what} of {long_movie!r} ran past timeout=1 s; its process was killed",
    )


@pytest.mark.parametrize("state", ["random", "zeros", "empty"])
def test_a_start_state_the_core_refuses_is_an_error(movie, tmp_path, state):
    members = _members(movie)
    size = {"random": len(members["Core.bin"]), "zeros": 1000, "empty": 0}[state]
    members["Core.bin"] = np.random.default_rng(0).bytes(size) if state == "random" else bytes(size)
    bad = _write(tmp_path / "bad.bk2", members)
    message = (
        f"{bad!r}: its Core.bin ({size} bytes) is not a save state the {GAME} core accepts "
        f"(the core's own are {len(_members(movie)['Core.bin'])} bytes)"
    )
    with pytest.raises(MovieError, match=re.escape(message)):
        replay(bad)
    if state == "random":
        _assert_one_line_error(_cli("replay", bad), "replay", message)


def _frame_error(path, n, got):
    return (
        f"{path!r}: line {n} of its Input Log.txt: expected a frame of 1 player(s) x 12 buttons "
        f"of 'BAMSUDLRCYXZ' like '|..|............|', got {got!r}"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:3] + ["|..|xyz|"] + ls[4:], lambda p: _frame_error(p, 4, "|..|xyz|")),
        (  # a letter that is no Genesis button
            lambda ls: ls[:3] + ["|..|Q...........|"] + ls[4:],
            lambda p: _frame_error(p, 4, "|..|Q...........|"),
        ),
        (  # two players' fields where the names say one
            lambda ls: ls[:3] + ["|..|" + "." * 12 + "|" + "." * 12 + "|"] + ls[4:],
            lambda p: _frame_error(p, 4, "|..|" + "." * 12 + "|" + "." * 12 + "|"),
        ),
        (  # stable-retro would stop at an empty line and replay a shorter movie
            lambda ls: ls[:5] + [""] + ls[5:],
            lambda p: _frame_error(p, 6, ""),
        ),
        (
            lambda ls: ls[1:],
            lambda p: f"{p!r}: line 1 of its Input Log.txt: expected '[Input]', got {KEYS!r}",
        ),
        (  # stable-retro raises a bare ValueError on these names
            lambda ls: ls[:1] + ["Up|Down|"] + ls[2:],
            lambda p: (
                f"{p!r}: line 2 of its Input Log.txt: expected the button names "
                "('P1 Up|P1 Down|...|'), got 'Up|Down|'"
            ),
        ),
        (
            lambda ls: ls + ["|..|............|"],
            lambda p: f"{p!r}: line {FRAMES + 5} of its Input Log.txt: expected nothing after "
            "'[/Input]'",
        ),
        (
            lambda ls: ls[:3] + ["|..|" + "." * 5000 + "|"] + ls[4:],
            lambda p: f"{p!r}: line 4 of its Input Log.txt is longer than 4096 bytes",
        ),
    ],
    ids=["garbage", "unknown-letter", "two-players", "empty-line", "no-[Input]", "names",
         "after-end", "long-line"],
)  # fmt: skip
def test_a_malformed_input_line_is_an_error(movie, tmp_path, edit, message):
    lines = _frame_lines(movie)
    assert lines[0] == "[Input]" and lines[1] == KEYS and lines[-1] == "[/Input]"
    bad = _with_log(movie, tmp_path / "bad.bk2", edit(lines))
    with pytest.raises(MovieError, match=re.escape(message(bad))):
        replay(bad)


@pytest.mark.parametrize("command", ["replay", "render"])
def test_the_cli_says_a_malformed_input_line_in_one_line(movie, tmp_path, command):
    lines = _frame_lines(movie)
    bad = _with_log(movie, tmp_path / "bad.bk2", lines[:3] + ["|..|xyz|"] + lines[4:])
    extra = ["-o", str(tmp_path / "x.mp4"), "--no-progress"] if command == "render" else []
    _assert_one_line_error(_cli(command, bad, *extra), command, _frame_error(bad, 4, "|..|xyz|"))


def test_max_frames_bounds_the_input_log(movie, tmp_path):
    with pytest.raises(
        MovieError,
        match=re.escape(f"{movie!r}: its Input Log.txt holds more than max_frames=5 frames"),
    ):
        replay(movie, max_frames=5)
    lines = _frame_lines(movie)
    big = _with_log(movie, tmp_path / "big.bk2", lines[:2] + [lines[2]] * 5000 + ["[/Input]"])
    limit = (64 << 10) + 100 * 128
    with pytest.raises(
        MovieError,
        match=re.escape(
            f"{big!r}: its member 'Input Log.txt' expands to {5000 * 18 + len(KEYS) + 17} "
            f"bytes, over max_frames=100 of {limit} bytes"
        ),
    ):
        replay(big, max_frames=100)
    assert replay(movie, max_frames=FRAMES)["frames"] == FRAMES


def test_a_movie_without_its_start_state_is_an_error(movie, tmp_path):
    members = _members(movie)
    del members["Core.bin"]
    bad = _write(tmp_path / "bad.bk2", members)
    with pytest.raises(
        MovieError, match=re.escape(f"{bad!r} is not a .bk2 movie: it has no member 'Core.bin'")
    ):
        replay(bad)
