"""fastretro render: .bk2 movies recorded by plain stable-retro, to mp4 and gif, read back."""

from __future__ import annotations

import glob
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from conftest import GAME

from fastretro import InvalidArgumentError
from fastretro.contest.movies import render

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="rendering needs imageio-ffmpeg")

FRAMES = 90


def _record_plain(folder: str) -> str:
    # Plain stable-retro, in its own process: RetroEnv(record=...) writes the movie.
    import stable_retro

    env = stable_retro.make(GAME, render_mode=None, record=folder)
    env.reset()
    rng = np.random.default_rng(0)
    for _ in range(FRAMES):
        env.step(rng.integers(0, 2, 12))
    env.stop_record()  # stable-retro writes the .bk2 when its movie closes
    env.close()
    return sorted(glob.glob(os.path.join(folder, "*.bk2")))[0]


@pytest.fixture(scope="module")
def plain_movie(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("plain"))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_record_plain, folder).result(timeout=120)


def _read_back(path):
    if path.endswith(".gif"):
        from PIL import Image

        with Image.open(path) as im:
            return im.n_frames, im.size
    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    return sum(1 for _ in reader), tuple(meta["size"])


@pytest.mark.parametrize(
    ("suffix", "every", "scale"), [("mp4", 1, 1), ("mp4", 3, 2), ("gif", 2, 1)]
)
def test_render_a_plain_stable_retro_movie_and_read_it_back(
    plain_movie, tmp_path, suffix, every, scale
):
    out = str(tmp_path / f"out.{suffix}")
    result = render(plain_movie, out, every=every, scale=scale, sheet_every=10, progress=False)
    assert result["frames"] == FRAMES // every
    assert _read_back(out) == (FRAMES // every, (320 * scale, 224 * scale))
    assert os.path.getsize(str(tmp_path / "out.sheet.png")) > 1000


def test_render_with_audio_and_from_the_cli(plain_movie, tmp_path):
    out = str(tmp_path / "a.mp4")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastretro",
            "render",
            plain_movie,
            "-o",
            out,
            "--audio",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["frames"] == FRAMES
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", out], capture_output=True, text=True
    )
    assert "Audio:" in probe.stderr and "Video:" in probe.stderr


def test_render_bad_input(tmp_path, plain_movie):
    with pytest.raises(
        InvalidArgumentError,
        match=re.escape(
            f"Expected the output to end in .mp4 or .gif, got {str(tmp_path / 'x.avi')!r}"
        ),
    ):
        render(plain_movie, tmp_path / "x.avi")
    with pytest.raises(
        InvalidArgumentError, match=re.escape(f"No .bk2 movie in {str(tmp_path)!r}")
    ):
        render(tmp_path, tmp_path / "x.mp4")
    with pytest.raises(InvalidArgumentError, match="Expected every to be an int >= 1, got 0"):
        render(plain_movie, tmp_path / "x.mp4", every=0)


@pytest.mark.parametrize("content", [b"not a zip", None])
def test_broken_movies_are_a_one_line_error(tmp_path, plain_movie, content):
    bad = tmp_path / "bad.bk2"
    with open(plain_movie, "rb") as f:
        whole = f.read()
    bad.write_bytes(content if content is not None else whole[: len(whole) // 3])  # truncated
    for command in (["replay", str(bad)], ["render", str(bad), "-o", str(tmp_path / "x.mp4")]):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fastretro",
                *command,
                *(["--no-progress"] if command[0] == "render" else []),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"fastretro {command[0]}: Cannot read {str(bad)!r}: not a complete .bk2 movie "
            "(truncated, or not a zip file)"
        )


def test_a_movie_of_a_game_without_its_rom_says_how_to_import_it(tmp_path, plain_movie):
    import zipfile

    other = tmp_path / "sonic.bk2"
    with zipfile.ZipFile(plain_movie) as src, zipfile.ZipFile(other, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name == "Header.txt":
                data = data.replace(b"Airstriker-Genesis-v0", b"SonicTheHedgehog-Genesis-v0")
            dst.writestr(name, data)
    from fastretro.contest import rom_imported

    if rom_imported("SonicTheHedgehog-Genesis-v0"):
        pytest.skip("the Sonic ROM is imported here")
    proc = subprocess.run(
        [sys.executable, "-m", "fastretro", "replay", str(other)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "python -m stable_retro.import DIR" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
