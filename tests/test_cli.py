"""The fastretro command: help, unknown commands, games, cleanup."""

from __future__ import annotations

import os

from conftest import GAME

from fastretro.runtime import shm
from fastretro.tools import cli


def test_help_lists_commands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for command in ("bench", "games", "cleanup"):
        assert command in out


def test_unknown_command_exits_2(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_games_lists_the_shipped_rom_and_the_import_hint(capsys):
    assert cli.main(["games", "--states"]) == 0
    out = capsys.readouterr().out
    assert f"rom  {GAME}  states: Level1" in out
    assert "python -m stable_retro.import DIR" in out


def test_cleanup_removes_segments_of_dead_owners_only(capsys):
    dead_pid = 2**22 + 12345  # above the default pid_max: no such process
    orphan = f"{shm.PREFIX}{dead_pid}_deadbeef"
    mine = f"{shm.PREFIX}{os.getpid()}_cafef00d"
    for name in (orphan, mine):
        with open(f"/dev/shm/{name}", "wb") as f:
            f.write(b"\0" * 64)
    try:
        assert cli.main(["cleanup"]) == 0
        assert f"removed /dev/shm/{orphan}" in capsys.readouterr().out
        assert orphan not in shm.list_segments()
        assert mine in shm.list_segments()
    finally:
        for name in (orphan, mine):
            if os.path.exists(f"/dev/shm/{name}"):
                os.unlink(f"/dev/shm/{name}")
