"""Examples run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_random_agent_example_runs():
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "random_agent.py"),
            "--steps",
            "50",
            "--num-envs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "frames/s" in out.stdout


def test_async_agent_example_runs():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "async_agent.py"), "--steps", "20"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "returns so far per env" in out.stdout


def test_ray_pool_example_runs():
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install fastretro[ray]")
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "ray_pool.py"), "--steps", "20"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert "2 shards, observations (4, 84, 84, 4)" in out.stdout
