"""``fastretro roms --from-ale``: ale-py's Atari ROMs imported into stable-retro's data folder.

These tests import for real (into the installed stable-retro's data folder), and hold whether
the ROMs were imported before or not.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("ale_py")

import stable_retro.data  # noqa: E402

from fastretro.runtime.backends import ale  # noqa: E402
from fastretro.tools import roms  # noqa: E402

ALL = stable_retro.data.Integrations.ALL
# A game no other test plays, so that removing its ROM for a moment disturbs nobody.
SPARE = "JourneyEscape-Atari2600-v0"


def rom_file(game: str) -> Path:
    return Path(stable_retro.data.get_romfile_path(game, ALL))


def test_import_from_ale_imports_every_game_ale_ships_and_is_idempotent():
    first = roms.import_from_ale()
    assert first == sorted(first)
    games = roms.importable_from_ale()
    assert games == sorted(ale.game_table())
    assert set(first) <= set(games)
    for game in games:
        assert stable_retro.data.verify_hash(game, ALL) == [], game
    assert roms.import_from_ale() == []  # nothing left to import


def test_import_from_ale_restores_a_missing_rom():
    roms.import_from_ale()
    path = rom_file(SPARE)
    original = path.read_bytes()
    aside = path.with_name(path.name + ".aside")
    os.replace(path, aside)
    try:
        with pytest.raises(FileNotFoundError):
            stable_retro.data.get_romfile_path(SPARE, ALL)
        assert roms.import_from_ale() == [SPARE]
        assert rom_file(SPARE).read_bytes() == original
        ale_rom = ale.ale_rom_path(ale.ale_rom(SPARE)).read_bytes()
        assert hashlib.sha1(original).digest() == hashlib.sha1(ale_rom).digest()
    finally:
        if aside.exists():
            os.replace(aside, path)


def test_import_from_ale_replaces_a_rom_of_the_wrong_sha1():
    roms.import_from_ale()
    path = rom_file(SPARE)
    original = path.read_bytes()
    try:
        path.write_bytes(b"not the ROM")
        assert roms.import_from_ale() == [SPARE]
        assert path.read_bytes() == original
    finally:
        path.write_bytes(original)


def test_main_imports_and_prints_a_summary(capsys):
    assert roms.main(["--from-ale"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        f"0 ROM(s) imported from ale-py; {len(ale.game_table())} already imported; "
        f"{len(ale.game_table())} stable-retro games have a ROM in ale-py"
    )


def test_main_help_names_the_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        roms.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: fastretro roms" in out and "--from-ale" in out


def test_main_without_an_option_prints_help_and_fails(capsys):
    assert roms.main([]) == 2
    assert "--from-ale" in capsys.readouterr().out


def test_main_without_ale_py_says_how_to_install_it(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # `import ale_py` raises ImportError
    ale.ale_rom_shas.cache_clear()
    try:
        assert roms.main(["--from-ale"]) == 1
    finally:
        ale.ale_rom_shas.cache_clear()
    err = capsys.readouterr().err
    assert err.strip() == 'fastretro roms: ale-py is not installed: pip install "fastretro[atari]"'
