"""``fastretro roms --from-ale``: import into stable-retro the Atari 2600 ROMs that ale-py ships.

ale-py (PyPI) ships 108 Atari 2600 ROMs; 32 of them have the SHA-1 that a stable-retro Atari2600
integration expects (``rom.sha``). :func:`import_from_ale` hands those files to stable-retro's own
import (``stable_retro.data.merge``, what ``python -m stable_retro.import DIR`` does), which
writes them into the integrations' folders. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

INSTALL_HINT = 'ale-py is not installed: pip install "fastretro[atari]"'


def _sha1(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def _target(entry: tuple[str, str, str]) -> tuple[str, Path]:
    # stable-retro's known-hash entry: (game, ROM extension, integration folder).
    game, ext, folder = entry
    return game, Path(folder) / game / f"rom{ext}"


def _expected_shas(rom_file: Path) -> set[str]:
    sha_file = rom_file.parent / "rom.sha"
    return set(sha_file.read_text().split()) if sha_file.is_file() else set()


def import_from_ale() -> list[str]:
    """Import every ROM ale-py ships whose SHA-1 a stable-retro integration expects.

    A game whose ROM is already imported (a file whose SHA-1 its ``rom.sha`` lists) is left as
    it is, so a second call imports nothing.

    Returns:
        The game IDs imported by this call, sorted.

    Raises:
        ImportError: ale-py is not installed.
        PermissionError: stable-retro's data folder is not writable.
    """
    import stable_retro.data

    from fastretro.runtime.backends.ale import ale_rom_path, ale_rom_shas

    known = stable_retro.data.get_known_hashes()
    wanted: dict[str, Path] = {}  # game -> ale-py's ROM file
    for sha, rom in ale_rom_shas().items():
        if sha not in known:
            continue
        game, target = _target(known[sha])
        if target.is_file() and _sha1(target) in _expected_shas(target):
            continue
        wanted[game] = ale_rom_path(rom)
    if not wanted:
        return []
    try:
        stable_retro.data.merge(*map(str, wanted.values()), quiet=True)
    except PermissionError as e:
        raise PermissionError(
            f"Cannot import ROMs: stable-retro's data folder is not writable ({e})"
        ) from None
    for game, source in wanted.items():
        _, target = _target(known[_sha1(source)])
        if not (target.is_file() and _sha1(target) == _sha1(source)):
            raise RuntimeError(f"stable-retro's import did not write {target} for {game}")
    return sorted(wanted)


def importable_from_ale() -> list[str]:
    """The game IDs whose ROM ale-py ships (imported or not), sorted.

    Raises:
        ImportError: ale-py is not installed.
    """
    import stable_retro.data

    from fastretro.runtime.backends.ale import ale_rom_shas

    known = stable_retro.data.get_known_hashes()
    return sorted(known[sha][0] for sha in ale_rom_shas() if sha in known)


def main(argv: list[str] | None = None) -> int:
    """``fastretro roms --from-ale``: import ale-py's ROMs; print what was imported."""
    parser = argparse.ArgumentParser(
        prog="fastretro roms",
        description=(
            "Import ROMs into stable-retro. --from-ale imports the Atari 2600 ROMs that ale-py "
            'ships (pip install "fastretro[atari]") whose SHA-1 a stable-retro integration '
            "expects; nothing is downloaded. Other ROMs: python -m stable_retro.import DIR."
        ),
    )
    parser.add_argument(
        "--from-ale",
        action="store_true",
        help="import the Atari 2600 ROMs that ale-py ships (idempotent)",
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.from_ale:
        parser.print_help()
        return 2
    try:
        imported = import_from_ale()
        available = importable_from_ale()
    except (ImportError, PermissionError) as e:
        print(f"fastretro roms: {e}", file=sys.stderr)
        return 1
    for game in imported:
        print(f"imported {game}")
    print(
        f"{len(imported)} ROM(s) imported from ale-py; {len(available) - len(imported)} "
        f"already imported; {len(available)} stable-retro games have a ROM in ale-py"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
