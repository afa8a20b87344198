"""Shared fixtures: every test must leave no worker process and no shared-memory segment behind."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os

import pytest

from fastretro.runtime import shm

GAME = "Airstriker-Genesis-v0"
DATA = os.path.join(os.path.dirname(__file__), "data")


def own_segments() -> list[str]:
    return [n for n in shm.list_segments() if n.startswith(f"{shm.PREFIX}{os.getpid()}_")]


@pytest.fixture(autouse=True)
def no_leaks():
    yield
    gc.collect()
    assert own_segments() == [], "a test left shared-memory segments behind"
    children = [p for p in mp.active_children() if p.name.startswith("fastretro-worker")]
    assert children == [], f"a test left worker processes behind: {children}"
