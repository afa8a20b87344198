"""bench/bench_size.py runs end to end on a tiny plan: its JSON lines, its tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import GAME

BENCH = os.path.join(os.path.dirname(__file__), "..", "bench", "bench_size.py")


def test_the_size_bench_measures_both_pools_and_a_worker():
    out = subprocess.run(
        [
            *(sys.executable, BENCH, "--game", GAME, "--num-envs", "2", "--steps", "3"),
            *("--rate-seconds", "0.3", "--breakdown"),
            *("--backends", "fastretro", "fastretro-stable-retro", "gymnasium"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    sizes = {r["backend"]: r for r in rows if r["bench"] == "size"}
    assert set(sizes) == {"fastretro", "fastretro-stable-retro", "gymnasium"}
    for row in sizes.values():
        assert "error" not in row, row.get("error")
        assert row["num_envs"] == 2 and row["processes"] >= 2
        assert row["pss_mb_per_env"] > 0 and row["startup_s"] > 0 and row["startup_cpu_s"] > 0
        assert row["frames_per_s"] > 0
    (worker,) = [r for r in rows if r["bench"] == "size-worker"]
    assert "emulator core: zero-filled state (bss)" in worker["parts"]
    (phases,) = [r for r in rows if r["bench"] == "size-phases"]
    assert [p[0] for p in phases["phases"]][:2] == ["forked", "prepare_process (gc.freeze)"]
    assert "| envs | pool | MB/env |" in out.stdout
    assert "| 2 | fastretro |" in out.stdout and "| 2 | fastretro-stable-retro |" in out.stdout
    assert "(1.00x) |" in out.stdout  # the smallest size's own rate
    assert "| part | PSS | private |" in out.stdout
