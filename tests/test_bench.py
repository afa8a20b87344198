"""The bench engine: it measures every backend it is asked for and writes JSON, PNG and a table."""

from __future__ import annotations

import json
import re

import pytest
from conftest import GAME

from fastretro import bench
from fastretro.errors import GameNotFoundError, InvalidArgumentError


def test_run_bench_writes_json_png_and_table(tmp_path):
    report = bench.run_bench(
        GAME,
        configs=("rgb-fs1",),
        num_envs=(1, 2),
        backends=("limit", "single", "gymnasium", "fastretro"),
        seconds=0.2,
        warmup=0.05,
        out_dir=str(tmp_path),
        progress=False,
    )
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"machine", "settings", "results"}
    assert data["machine"]["cores"] >= 1
    assert (tmp_path / "bench.png").stat().st_size > 10_000
    got = {(r["backend"], r["num_envs"]) for r in report["results"]}
    assert got == {
        ("limit", None),
        ("single", None),
        ("gymnasium", 1),
        ("gymnasium", 2),
        ("fastretro", 1),
        ("fastretro", 2),
    }
    assert all(r["error"] is None and r["frames_per_s"] > 0 for r in report["results"])
    table = bench.format_table(report, markdown=True)
    for backend in ("limit", "single", "gymnasium", "fastretro"):
        assert f"| rgb-fs1 | {backend} |" in table
    assert re.search(r"\(\d+\.\d\d L, \d+\.\d\dx gym\)", table)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"configs": ("rgb-fs9",)},
            InvalidArgumentError,
            "Unknown config 'rgb-fs9'; expected one of ['rgb-fs1', 'rgb-fs4-sticky']",
        ),
        (
            {"backends": ("envpool",)},
            InvalidArgumentError,
            "Unknown backend 'envpool'; expected one of ['limit', 'single', 'gymnasium', 'sb3', "
            "'fastretro']",
        ),
        ({"num_envs": (0,)}, InvalidArgumentError, "Expected every num_envs >= 1, got 0"),
        ({"seconds": 0}, InvalidArgumentError, "Expected seconds > 0, got 0"),
        ({"game": "Nope-v0"}, GameNotFoundError, "Unknown game 'Nope-v0'"),
    ],
)
def test_bad_bench_arguments(kwargs, error, message, tmp_path):
    with pytest.raises(error, match=re.escape(message)):
        bench.run_bench(**{"out_dir": str(tmp_path), "progress": False, **kwargs})


def test_cli_bench_reports_bad_input_with_exit_code_2(capsys):
    assert bench.main(["--configs", "nope", "--out", ""]) == 2
    assert "fastretro bench: Unknown config 'nope'" in capsys.readouterr().err
