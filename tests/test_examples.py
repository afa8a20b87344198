"""Examples run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_example(name: str, *args: str, timeout: float = 120) -> str:
    """Run examples/<name> in a fresh interpreter; return its stdout (it must exit with 0)."""
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_random_agent_example_runs():
    assert "frames/s" in run_example("random_agent.py", "--steps", "50", "--num-envs", "2")


def test_async_agent_example_runs():
    assert "returns so far per env" in run_example("async_agent.py", "--steps", "20")


def test_ray_pool_example_runs():
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install fastretro[ray]")
    stdout = run_example("ray_pool.py", "--steps", "20", timeout=180)
    assert "2 shards, observations (4, 84, 84, 4)" in stdout


def test_snapshots_example_runs():
    stdout = run_example("snapshots.py", "--steps", "600", "--episode-steps", "150")
    assert "best return" in stdout


def test_open_loop_example_runs():
    stdout = run_example("open_loop.py", "--num-envs", "2", "--length", "60", "--rounds", "2")
    assert "round 1: returns" in stdout and "best script: return" in stdout
