"""The package's layout: old import paths still work (for one release), and so do the CLI's."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

from fastretro._moved import MOVED


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_import_paths_give_the_moved_module_with_a_warning(old, new):
    if "sb3" in old:
        pytest.importorskip("stable_baselines3", reason="stable-baselines3 is a test extra")
    if old.endswith("distributed"):
        pytest.importorskip("ray", reason="ray is a test extra")
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_old_from_imports_of_public_names_still_work():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastretro.pool import VecRetroEnv as old_pool
        from fastretro.spec import GameSetup
        from fastretro.stats import PoolStats as old_stats
    from fastretro import VecRetroEnv
    from fastretro.runtime.games import GameSetup as new_setup
    from fastretro.runtime.stats import PoolStats

    assert old_pool is VecRetroEnv and old_stats is PoolStats and GameSetup is new_setup


def test_public_names_are_importable_from_the_package():
    import fastretro

    for name in fastretro.__all__:
        assert getattr(fastretro, name) is not None, name


def test_python_dash_m_fastretro_is_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "fastretro", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: fastretro COMMAND")
    for command in ("bench", "games", "eval", "ppo", "jerk", "profile"):
        assert f"  {command} " in out.stdout


def test_the_old_import_paths_go_away_in_0_3():
    # fastretro/_moved.py's warning promises it: the release that makes the version 0.3 drops
    # the aliases (and _moved.py) in the same change.
    import fastretro

    major, minor = (int(part) for part in fastretro.__version__.split(".")[:2])
    assert (major, minor) < (0, 3) or not MOVED, "0.3 keeps no old import paths: delete _moved.py"
