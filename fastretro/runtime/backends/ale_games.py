"""The Atari 2600 data both backends share: ALE's game table, ROMs and action sets.

stable-retro runs Atari 2600 games on its Stella libretro core; ale-py (the Arcade Learning
Environment) runs the same ROMs on its own Stella (fastretro/runtime/backends/ale.py). This
module says how the two meet, without running either emulator:

- the game table (:func:`game_table`): which stable-retro game IDs ALE can run, found by matching
  the SHA-1s stable-retro's integrations expect (``rom.sha``) against the ROMs ale-py ships;
- ALE's action sets as stable-retro button combos (:func:`action_set`: ``"ale_full"`` and
  ``"ale_minimal"``, read from the package data ``fastretro/data/atari.json`` so that the
  stable-retro backend can offer them without ale-py), and the reverse table from a button mask
  to ALE's action (:func:`mask_to_ale_table`). Both go through each game's buttons
  (:func:`game_buttons`): in Pong the two emulators wire the paddle to different joystick
  directions;
- :class:`AtariActions`: the button filtering stable-retro's ``GameData`` gives action sets.

ale-py is imported only where ALE's ROMs are needed (it is the ``atari`` extra), so the action
sets work on the stable-retro backend without it. ``python -m fastretro.tools.atari_data``
regenerates ``atari.json`` from the installed ale-py and stable-retro.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from fastretro.errors import GameNotFoundError, InvalidArgumentError
from fastretro.runtime.backends.base import ConsoleActions

#: stable-retro's Atari2600 buttons (``cores/stella.json``), ``""`` for its unnamed one; bit ``b``
#: of a button mask is ``BUTTONS[b]``.
BUTTONS: tuple[str, ...] = ("BUTTON", "", "SELECT", "RESET", "UP", "DOWN", "LEFT", "RIGHT")
#: The action-set names this module defines.
ACTION_SETS = ("ale_full", "ale_minimal")

_SUFFIX = "-Atari2600"
_INSTALL_HINT = 'ale-py is not installed: pip install "fastretro[atari]"'


def import_ale():
    """The ``ale_py`` module.

    Raises:
        ImportError: ale-py is not installed (the message says how to install it).
    """
    try:
        import ale_py
    except ImportError:
        raise ImportError(_INSTALL_HINT) from None
    return ale_py


# ---------------------------------------------------------------------------------------------
# The game table


@functools.lru_cache(maxsize=1)
def ale_rom_shas() -> dict[str, str]:
    """The SHA-1 of every ROM ale-py ships: ``{sha1: ALE ROM name}`` (cached).

    Raises:
        ImportError: ale-py is not installed.
    """
    ale_py = import_ale()
    shas = {}
    for name in ale_py.roms.get_all_rom_ids():
        path = ale_py.roms.get_rom_path(name)
        if path is not None:
            shas[hashlib.sha1(Path(path).read_bytes()).hexdigest()] = name
    return shas


def ale_rom_path(rom: str) -> Path:
    """The file of ale-py's ROM ``rom`` (e.g. ``"pong"``), its MD5 checked by ale-py."""
    path = import_ale().roms.get_rom_path(rom)
    if path is None:
        raise GameNotFoundError(f"ale-py ships no ROM named {rom!r}")
    return Path(path)


@functools.lru_cache(maxsize=1)
def game_table() -> dict[str, str]:
    """Every stable-retro Atari2600 game ALE can run: ``{game ID: ALE ROM name}`` (cached).

    A game is in the table when its integration's ``rom.sha`` lists the SHA-1 of a ROM that
    ale-py ships (``Pong-Atari2600-v0`` -> ``pong``); computed from the installed packages (32
    games with ale-py 0.12.1 and stable-retro 1.0.1), in game-ID order. The stable-retro ROM need
    not be imported: ALE loads its own copy.

    Raises:
        ImportError: ale-py is not installed.
    """
    import stable_retro.data as data

    shas = ale_rom_shas()
    table = {}
    for game in sorted(data.list_games(data.Integrations.ALL)):
        if _SUFFIX not in game:
            continue
        path = data.get_file_path(game, "rom.sha", data.Integrations.ALL)
        if not path:
            continue
        for sha in Path(path).read_text().split():
            if sha in shas:
                table[game] = shas[sha]
                break
    return table


def ale_rom(game: str) -> str:
    """The ALE ROM name of stable-retro game ``game`` (``"Pong-Atari2600-v0"`` -> ``"pong"``).

    Raises:
        GameNotFoundError: ALE ships no ROM with the SHA-1 this game's integration expects.
    """
    table = game_table()
    if game not in table:
        raise GameNotFoundError(
            f"ALE cannot run {game!r}: ale-py ships no ROM with the SHA-1 its stable-retro "
            f"integration expects. ALE runs these {len(table)} games: {sorted(table)}"
        )
    return table[game]


def game_info(game: str) -> dict:
    """The "info" (RAM variables) of stable-retro game ``game``'s ``data.json`` ({} if none)."""
    import stable_retro.data as data

    path = data.get_file_path(game, "data.json", data.Integrations.ALL)
    if not path:
        return {}
    with open(path) as f:
        return json.load(f).get("info", {})


# ---------------------------------------------------------------------------------------------
# Action sets


def data_path() -> Path:
    """Where the package data ``atari.json`` lives (what :func:`atari_data` reads)."""
    return Path(str(resources.files("fastretro") / "data" / "atari.json"))


@functools.lru_cache(maxsize=1)
def atari_data() -> dict:
    """The package data ``fastretro/data/atari.json``: ALE's actions and each game's minimal set.

    Layout: ``"actions"``: ALE's 18 actions in index order, each ``[name, [buttons]]``;
    ``"games"``: ``{game ID: {"rom": ALE ROM name, "minimal": [ALE action indices]}}``, plus
    ``"buttons"`` where stable-retro's buttons differ from ALE's (:func:`game_buttons`) and
    ``"fixed_reset"`` where a reset always reaches the same state (:func:`fixed_reset`).
    """
    with open(data_path()) as f:
        return json.load(f)


def fixed_reset(game: str) -> bool:
    """Whether ALE's ``reset_game`` of ``game`` reaches one state whatever came before it.

    ``atari.json``'s ``"fixed_reset"``, found by ``reset_is_fixed``
    (fastretro/tools/atari_data.py) on the ale-py that wrote the file; false on any other
    version, whose emulator the probe has not seen.
    """
    data = atari_data()
    if import_ale().__version__ != data["ale_py"]:
        return False
    return bool(data["games"].get(game, {}).get("fixed_reset", False))


def ale_action_combos() -> tuple[tuple[str, ...], ...]:
    """ALE's 18 actions as stable-retro button combos, in ALE's index order.

    ``FIRE`` is ``("BUTTON",)``, ``UPFIRE`` is ``("UP", "BUTTON")``, ``NOOP`` is ``()``.
    """
    return tuple(tuple(buttons) for _, buttons in atari_data()["actions"])


def minimal_actions(game: str) -> tuple[int, ...]:
    """The ALE action indices of ``game``'s minimal set (ALE's ``getMinimalActionSet()``).

    Raises:
        GameNotFoundError: ``atari.json`` has no entry for ``game``.
    """
    games = atari_data()["games"]
    if game not in games:
        raise GameNotFoundError(
            f"No ALE minimal action set for {game!r}: ALE runs only {sorted(games)}"
        )
    return tuple(games[game]["minimal"])


def game_buttons(game: str | None) -> dict[str, str]:
    """What ALE's buttons are in stable-retro's Atari2600 core for ``game``.

    Keys are the buttons of :func:`ale_action_combos` (``"UP"``, ``"DOWN"``, ``"LEFT"``,
    ``"RIGHT"``, ``"BUTTON"``), values the stable-retro button with the same effect. It is the
    identity except in paddle games where the two emulators wire the joystick to the paddle
    differently: ALE moves the paddle with LEFT/RIGHT, while stable-retro's Stella core follows
    the cartridge's properties (in Pong it moves the player's paddle with UP/DOWN, and
    LEFT/RIGHT move the other one). There ALE ignores UP/DOWN, and they have no entry.
    ``atari.json`` records these games' buttons, as measured by
    ``fastretro.tools.atari_data.build_atari_data``.
    """
    entry = atari_data()["games"].get(game, {}) if game is not None else {}
    return dict(entry.get("buttons", {b: b for b in ("UP", "DOWN", "LEFT", "RIGHT", "BUTTON")}))


def action_set(name: str, game: str | None = None) -> tuple[tuple[str, ...], ...]:
    """ALE's action set ``name`` (``"ale_full"`` or ``"ale_minimal"``) as stable-retro combos.

    The result is a list of button combos as ``fastretro.actions.choose`` takes them, so both
    backends can offer ALE's action sets: action ``k`` of ``"ale_full"`` is ALE's action ``k``
    (``UPFIRE`` is ``("UP", "BUTTON")``), action ``k`` of ``"ale_minimal"`` is ALE's action
    ``minimal_actions(game)[k]``, each in ``game``'s buttons (:func:`game_buttons`: in Pong
    ALE's RIGHTFIRE is ``("UP", "BUTTON")``); ``game=None`` gives ALE's generic combos.

    Raises:
        InvalidArgumentError: unknown ``name``.
        GameNotFoundError: ``"ale_minimal"`` for a game ALE does not run.
    """
    if name not in ACTION_SETS:
        raise InvalidArgumentError(f"Expected an action set in {list(ACTION_SETS)}, got {name!r}")
    if name == "ale_minimal" and game is None:
        raise InvalidArgumentError("The 'ale_minimal' action set needs a game")
    buttons = game_buttons(game)
    combos = tuple(tuple(buttons[b] for b in c if b in buttons) for c in ale_action_combos())
    if name == "ale_full":
        return combos
    return tuple(combos[a] for a in minimal_actions(game))


def combo_mask(combo: Sequence[str]) -> int:
    """The button mask of a combo of Atari2600 button names."""
    index = {b: i for i, b in enumerate(BUTTONS) if b}
    unknown = [b for b in combo if b not in index]
    if unknown:
        raise InvalidArgumentError(
            f"Unknown Atari2600 button(s) {unknown}: expected names in {[b for b in BUTTONS if b]}"
        )
    return sum(1 << index[b] for b in set(combo))


@functools.lru_cache(maxsize=64)
def mask_to_ale_table(game: str | None = None) -> np.ndarray:
    """The ALE action of every stable-retro button mask for ``game``: int64 ``(256,)``.

    A mask means what stable-retro's filtered Atari2600 actions make of it
    (``data.filter_action``, with ``cores/stella.json``'s groups ``[], UP, DOWN`` /
    ``[], LEFT, RIGHT`` / ``[], BUTTON``): UP with DOWN is neither, LEFT with RIGHT is neither,
    and SELECT, RESET and the unnamed button are dropped. ALE's agent has no console switches
    (``act`` turns its own RESET into NOOP); ALE presses RESET itself in ``reset_game()``, which
    ``AleEmulator.start`` calls. The remaining buttons are read through
    :func:`game_buttons` (in Pong, UP is ALE's RIGHT; LEFT/RIGHT, which move the other paddle
    in stable-retro, are dropped). The table is read-only and cached.
    """
    ale_button = {retro: ale for ale, retro in game_buttons(game).items()}
    by_combo = {frozenset(c): a for a, c in enumerate(ale_action_combos())}
    table = np.zeros(256, np.int64)
    for mask in range(256):
        pressed = {b for i, b in enumerate(BUTTONS) if b and mask >> i & 1}
        for a, b in (("UP", "DOWN"), ("LEFT", "RIGHT")):
            if a in pressed and b in pressed:
                pressed -= {a, b}
        table[mask] = by_combo[frozenset(ale_button[b] for b in pressed if b in ale_button)]
    table.setflags(write=False)
    return table


# ---------------------------------------------------------------------------------------------
# Button filtering without stable-retro's emulator


class AtariActions(ConsoleActions):
    """What stable-retro's ``GameData`` tells action sets, for the Atari2600 core, without it.

    :class:`~fastretro.runtime.backends.base.ConsoleActions` over the core's button groups
    (``cores/stella.json``: ``[], UP, DOWN`` / ``[], LEFT, RIGHT`` / ``[], BUTTON``); buttons in
    no group (SELECT, RESET) are dropped. ``tests/runtime/test_ale_backend.py`` compares both
    with stable-retro's own.
    """

    def __init__(self) -> None:
        super().__init__("Atari2600", BUTTONS)
