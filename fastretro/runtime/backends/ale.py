"""ALE's Atari 2600 emulator behind the emulator seam, and the Atari data both backends share.

stable-retro runs Atari 2600 games on its Stella libretro core; ale-py (the Arcade Learning
Environment) runs the same ROMs on its own Stella, about 3.6 times faster, and allows several
emulators in one process. This module holds what it takes to run a stable-retro Atari2600
integration on ALE with the same meaning:

- the game table (:func:`game_table`): which stable-retro game IDs ALE can run, found by matching
  the SHA-1s stable-retro's integrations expect (``rom.sha``) against the ROMs ale-py ships;
- the RAM-variable decoder (:class:`RamDecoder`): ``data.json``'s "info" variables decoded from
  the 128 bytes of ``ALEInterface.getRAM()`` exactly as stable-retro's ``GameData.lookup_all()``
  decodes them from its own copy of that RAM;
- ALE's action sets as stable-retro button combos (:func:`action_set`: ``"ale_full"`` and
  ``"ale_minimal"``, read from the package data ``fastretro/data/atari.json`` so that the
  stable-retro backend can offer them without ale-py), and the reverse table from a button mask
  to ALE's action (:func:`mask_to_ale_table`). Both go through each game's buttons
  (:func:`game_buttons`): in Pong the two emulators wire the paddle to different joystick
  directions;
- per-player scenarios (Pong's ``"rewards"``) reduced to one player's (:func:`player_scenario`);
- :class:`AleEmulator`, the :class:`~fastretro.runtime.backends.base.Emulator` on
  ``ale_py.ALEInterface``.

ale-py is imported only where an ALE emulator or ALE's ROMs are needed (it is the ``atari``
extra), so the data layer works on the stable-retro backend without it.

``python -m fastretro.runtime.backends.ale --write-data`` regenerates ``atari.json`` from the
installed ale-py and stable-retro.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numba
import numpy as np

from fastretro.errors import GameNotFoundError, InvalidArgumentError
from fastretro.runtime.backends.ale_palettes import gray_table, identify_palette
from fastretro.runtime.backends.base import Emulator
from fastretro.runtime.jit import JIT
from fastretro.runtime.scenario import MAX_PLAYERS, player_scenario  # noqa: F401 - re-exported

#: stable-retro's Atari2600 buttons (``cores/stella.json``), ``""`` for its unnamed one; bit ``b``
#: of a button mask is ``BUTTONS[b]``.
BUTTONS: tuple[str, ...] = ("BUTTON", "", "SELECT", "RESET", "UP", "DOWN", "LEFT", "RIGHT")
#: Where stable-retro maps the 2600's 128 bytes of RAM (``rambase`` in ``cores/stella.json``):
#: a data.json address ``A`` is ``getRAM()[A - RAM_BASE]``.
RAM_BASE = 0x80
RAM_SIZE = 128
#: The action-set names this module defines.
ACTION_SETS = ("ale_full", "ale_minimal")

_SUFFIX = "-Atari2600"
_INSTALL_HINT = 'ale-py is not installed: pip install "fastretro[atari]"'
_DATA_COMMAND = "python -m fastretro.runtime.backends.ale --write-data"


def _import_ale():
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
    ale_py = _import_ale()
    shas = {}
    for name in ale_py.roms.get_all_rom_ids():
        path = ale_py.roms.get_rom_path(name)
        if path is not None:
            shas[hashlib.sha1(Path(path).read_bytes()).hexdigest()] = name
    return shas


def ale_rom_path(rom: str) -> Path:
    """The file of ale-py's ROM ``rom`` (e.g. ``"pong"``), its MD5 checked by ale-py."""
    path = _import_ale().roms.get_rom_path(rom)
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
# The RAM-variable decoder

_U64 = (1 << 64) - 1
_DIGIT_RAW, _DIGIT_BCD, _DIGIT_LN_BCD = 0, 1, 2
# Plan columns: the RAM index and the weight of up to 8 bytes, then the digit table, the sign
# bit and the bits a negative value sets, and the mask.
_COL_INDEX, _COL_SHIFT, _COL_DIGITS, _COL_SIGN, _COL_EXTEND, _COL_MASK = 0, 8, 16, 17, 18, 19
_PLAN_COLUMNS = 20


def _digit_tables() -> np.ndarray:
    # stable-retro's DataType::decode reads byte b as
    # `(b & maskLo) % cvt + ((b & maskHi) >> 4) % cvt * 10`, with (maskLo, maskHi, cvt) =
    # (0xFF, 0, 256) for binary, (0xF, 0xF0, 10) for BCD ('d') and (0xF, 0, 10) for one BCD
    # digit per byte ('n'); non-decimal nibbles (A-F) are taken modulo 10, as there.
    b = np.arange(256, dtype=np.uint64)
    raw = b
    bcd = (b & 0xF) % 10 + ((b & 0xF0) >> 4) % 10 * 10
    ln_bcd = (b & 0xF) % 10
    return np.stack([raw, bcd, ln_bcd]).astype(np.uint64)


_DIGITS = _digit_tables()


def _byte_weights(type_: str, width: int) -> list[int]:
    """stable-retro's ``DataType`` shift table: the weight of each of the ``width`` bytes."""
    # src/memory.cpp DataType::DataType, on a little-endian host (where '=' is '<' and '>='
    # is '><').
    first = type_[0]
    second = type_[1]
    repr_ = type_[-2]
    if first == "=":
        endian = "<"
    elif first == ">":
        endian = {"<": "><", "=": "><"}.get(second, ">")
    elif first == "<":
        endian = {">": "<>", "=": "<"}.get(second, "<")
    else:
        endian = "<"  # '|' and anything else: UNDEF, read as little-endian
    step = {"d": 100, "n": 10}.get(repr_, 256)
    if endian == "<":
        base, end, half, diff = 0, width, -1, 1
    elif endian == ">":
        base, end, half, diff = width - 1, -1, -1, -1
    elif endian == "<>":  # MIXED_LB
        base, end, half, diff = width // 2 - 1, -1, width - 1, -1
    else:  # "><": MIXED_BL
        base, end, half, diff = width // 2, width, 0, 1
    weights = [0] * 8
    shift = 1
    i = base
    while i != end:
        weights[i] = shift
        shift = (shift * step) & _U64
        i += diff
    if half >= 0:
        i = half
        while i != base:
            weights[i] = shift
            shift = (shift * step) & _U64
            i += diff
    return weights[:width]


class RamDecoder:
    """``data.json``'s RAM variables, decoded from the 2600's 128 bytes as stable-retro does.

    The variables are compiled once into a plan (one uint64 row per variable: the RAM index and
    the weight of each byte, the digit table, the sign extension and the mask, as stable-retro's
    ``DataType``/``Variable``); each call runs one compiled loop over it
    (:func:`decode_ram_into`, which a compiled worker loop can call on the plan itself).

    stable-retro's rules (``GameData::load`` and ``AddressSpace`` in src/data.cpp, src/memory.cpp):
    a ``type`` is ``[endian][endian2]<repr><width>``; a type shorter than 3 characters or wider
    than 8 bytes is skipped; ``repr`` is ``u`` (unsigned), ``i`` (signed, two's complement),
    ``d`` (two BCD digits a byte) or ``n`` (one BCD digit a byte), anything else reads as ``u``;
    endian ``|``, ``<`` and ``=`` are little-endian, ``>`` big-endian, ``><`` and ``>=`` the high
    half first with each half little-endian, ``<>`` the low half first with each half big-endian
    (as on a little-endian host). The value is then AND-ed with ``mask`` (default all ones; a
    negative JSON mask is its 64-bit two's complement). A variable whose address is outside RAM
    (0x80-0xFF) is left out, as ``lookup_all()`` leaves it out; one that starts in RAM but runs
    past its end (stable-retro would read past the RAM block) is left out too. Both are listed in
    :attr:`skipped` (no stable-retro Atari integration has either).

    Attributes:
        names: the decoded variables, in ``data.json`` order.
        plan: uint64 ``(len(names), 20)``, the compiled plan.
        size: the RAM's length in bytes.
        skipped: ``{name: why}`` for the variables left out.
    """

    def __init__(self, info: Mapping, base: int = RAM_BASE, size: int = RAM_SIZE) -> None:
        """Compile ``info`` (``data.json``'s "info") for a RAM of ``size`` bytes at ``base``."""
        names: list[str] = []
        rows: list[np.ndarray] = []
        self.skipped: dict[str, str] = {}
        if any(
            not isinstance(var, Mapping) or "address" not in var or "type" not in var
            for var in info.values()
        ):
            # GameData::load rejects the whole file then: lookup_all() has no variables.
            why = "data.json has a variable without address or type"
            self.skipped = dict.fromkeys(info, why)
            info = {}
        for name, var in info.items():
            row, why = _plan_row(var, base, size)
            if row is None:
                self.skipped[name] = why
            else:
                names.append(name)
                rows.append(row)
        self.names: tuple[str, ...] = tuple(names)
        self.plan = (np.stack(rows) if rows else np.zeros((0, _PLAN_COLUMNS), np.uint64)).astype(
            np.uint64
        )
        self.size = size
        self._out = np.zeros(len(names), np.int64)

    def values_into(self, ram: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Decode every variable of ``ram`` (uint8 ``(size,)``) into ``out`` (int64 ``(n,)``).

        ``out[k]`` is variable ``names[k]``. Returns ``out``.
        """
        if ram.shape != (self.size,) or out.shape != self._out.shape:
            raise InvalidArgumentError(
                f"Expected a RAM of shape ({self.size},) and out of shape {self._out.shape}, "
                f"got {ram.shape} and {out.shape}"
            )
        decode_ram_into(ram, self.plan, out)
        return out

    def __call__(self, ram: np.ndarray) -> dict[str, int]:
        """The variables of ``ram`` (uint8 ``(size,)``, ALE's ``getRAM()``), as ``lookup_all()``."""
        if ram.shape != (self.size,):
            raise InvalidArgumentError(f"Expected a RAM of shape ({self.size},), got {ram.shape}")
        decode_ram_into(ram, self.plan, self._out)
        return dict(zip(self.names, self._out.tolist()))


def _plan_row(var: Mapping, base: int, size: int) -> tuple[np.ndarray | None, str]:
    type_ = var["type"]
    address = var["address"]
    if not isinstance(type_, str) or len(type_) < 3:
        return None, "a type shorter than 3 characters (stable-retro skips it)"
    width = ord(type_[-1]) - ord("0")
    if not 0 <= width <= 8:
        return None, "a width outside 0-8 (stable-retro skips it)"
    if isinstance(address, bool) or not isinstance(address, (int, float)):
        return None, f"address {address!r} is not a number"
    address = int(address)
    if not base <= address < base + size:
        return None, "an address outside RAM (stable-retro's lookup_all() leaves it out)"
    if address + width > base + size:
        return None, "runs past the end of RAM (stable-retro would read past its RAM block)"
    mask = var.get("mask", _U64)
    if isinstance(mask, bool) or not isinstance(mask, (int, float)):
        return None, f"mask {mask!r} is not a number"
    row = np.zeros(_PLAN_COLUMNS, np.uint64)
    weights = _byte_weights(type_, width)
    for k, weight in enumerate(weights):
        row[_COL_INDEX + k] = address - base + k
        row[_COL_SHIFT + k] = weight
    row[_COL_DIGITS] = {"d": _DIGIT_BCD, "n": _DIGIT_LN_BCD}.get(type_[-2], _DIGIT_RAW)
    if type_[-2] == "i" and 1 <= width < 8:
        # `datum <<= 8 * (8 - width); datum >>= 8 * (8 - width)`: two's complement of width bytes.
        row[_COL_SIGN] = 1 << (8 * width - 1)
        row[_COL_EXTEND] = _U64 ^ ((1 << (8 * width)) - 1)
    row[_COL_MASK] = int(mask) & _U64
    return row, ""


@numba.njit(**JIT, boundscheck=False)
def decode_ram_into(ram, plan, out):
    """Decode the variables of a :class:`RamDecoder` plan from ``ram`` into ``out``.

    No checks: ``ram`` is uint8 and covers every index in the plan, ``plan`` is
    ``RamDecoder.plan`` (uint64 ``(n, 20)``), ``out`` is int64 ``(n,)``.

    Each plan row: columns 0-7 the RAM index of each byte, 8-15 its weight (0 for unused bytes),
    16 the digit table (0 binary, 1 BCD, 2 one BCD digit a byte), 17 the sign bit (0 unless
    signed), 18 the bits a negative value sets, 19 the mask.
    """
    # uint64 throughout, as stable-retro's arithmetic wraps; the cast to int64 keeps the bits.
    for v in range(plan.shape[0]):
        digits = plan[v, _COL_DIGITS]
        datum = np.uint64(0)
        for k in range(8):
            datum += _DIGITS[digits, ram[plan[v, _COL_INDEX + k]]] * plan[v, _COL_SHIFT + k]
        if datum & plan[v, _COL_SIGN]:
            datum |= plan[v, _COL_EXTEND]
        out[v] = np.int64(datum & plan[v, _COL_MASK])


# ---------------------------------------------------------------------------------------------
# Action sets


def _data_path() -> Path:
    return Path(str(resources.files("fastretro") / "data" / "atari.json"))


@functools.lru_cache(maxsize=1)
def atari_data() -> dict:
    """The package data ``fastretro/data/atari.json``: ALE's actions and each game's minimal set.

    Layout: ``"actions"``: ALE's 18 actions in index order, each ``[name, [buttons]]``;
    ``"games"``: ``{game ID: {"rom": ALE ROM name, "minimal": [ALE action indices]}}``, plus
    ``"buttons"`` where stable-retro's buttons differ from ALE's (:func:`game_buttons`).
    """
    with open(_data_path()) as f:
        return json.load(f)


def ale_action_names() -> tuple[str, ...]:
    """ALE's 18 action names in index order (``"NOOP"``, ``"FIRE"``, ``"UP"``, ...)."""
    return tuple(name for name, _ in atari_data()["actions"])


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
    ``atari.json`` records these games' buttons, as measured by :func:`build_atari_data`.
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
    :meth:`AleEmulator.start` calls. The remaining buttons are read through
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


def _combo_of_action_name(name: str) -> list[str]:
    tokens = re.findall("UP|DOWN|LEFT|RIGHT|FIRE", name)
    if "".join(tokens) != name.replace("NOOP", ""):
        raise ValueError(f"Cannot read ALE action name {name!r} as joystick directions and FIRE")
    return ["BUTTON" if t == "FIRE" else t for t in tokens]


# The button probe of build_atari_data: from the start of an episode, run _PROBE_WARM frames with
# nothing pressed, then hold one button for _PROBE_HOLD frames, and compare the RAM with holding
# nothing. It runs in a subprocess (stable-retro allows one emulator per process).
_PROBE_WARM, _PROBE_HOLD, _PROBE_VERTICAL_FRAMES = 120, 30, 1500
_RETRO_PROBE = """
import json, sys
import numpy as np
import stable_retro as retro

warm, hold = int(sys.argv[1]), int(sys.argv[2])
effects = {}
for game in sys.argv[3:]:
    env = retro.make(game, inttype=retro.data.Integrations.ALL, render_mode=None,
                     use_restricted_actions=retro.Actions.ALL)
    index = {b: i for i, b in enumerate(env.buttons) if b}

    def run(button):
        env.reset()
        action = np.zeros(len(env.buttons), np.uint8)
        for _ in range(warm):
            env.step(action)
        if button:
            action[index[button]] = 1
        for _ in range(hold):
            env.step(action)
        return env.get_ram().astype(np.int64)

    base = run(None)
    effects[game] = {b: (run(b) - base).tolist() for b in ("BUTTON", "UP", "DOWN", "LEFT", "RIGHT")}
    env.close()
print(json.dumps(effects))
"""


def _new_ale(ale_py, rom: str):
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", 0)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("frame_skip", 1)
    ale.loadROM(str(ale_rom_path(rom)))
    return ale


def _ignores_vertical(ale, combos) -> bool:
    # In paddle mode ALE drops UP/DOWN (ALEState::applyActionPaddles), so a random rollout and
    # the same rollout without them stay identical frame for frame; a joystick game that reads
    # them parts within a few frames. The two rollouts advance in turns of growing length.
    by_combo = {frozenset(c): a for a, c in enumerate(combos)}
    flat = [by_combo[frozenset(set(c) - {"UP", "DOWN"})] for c in combos]
    actions = np.random.default_rng(0).integers(0, len(combos), _PROBE_VERTICAL_FRAMES).tolist()
    ale.reset_game()
    state = flat_state = ale.cloneState()
    start, length = 0, 25
    while start < len(actions):
        turn = actions[start : start + length]
        ale.restoreState(state)
        rams = [(ale.act(a), ale.getRAM())[1] for a in turn]
        state = ale.cloneState()
        ale.restoreState(flat_state)
        for a, ram in zip(turn, rams):
            ale.act(flat[a])
            if not np.array_equal(ale.getRAM(), ram):
                return False
        flat_state = ale.cloneState()
        start, length = start + length, length * 2
    return True


def _ale_effects(ale, names: Sequence[str]) -> dict[str, np.ndarray]:
    def run(action: int) -> np.ndarray:
        ale.reset_game()
        for _ in range(_PROBE_WARM):
            ale.act(0)
        for _ in range(_PROBE_HOLD):
            ale.act(action)
        return ale.getRAM().astype(np.int64)

    base = run(0)
    return {
        b: run(names.index(a)) - base
        for a, b in (("FIRE", "BUTTON"), ("RIGHT", "RIGHT"), ("LEFT", "LEFT"))
    }


def _match_buttons(game: str, ale: dict[str, np.ndarray], retro: dict[str, list]) -> dict:
    # Each of ALE's buttons is the stable-retro button whose held effect on the RAM agrees with
    # its own on the most bytes (same bytes changed, same direction).
    buttons = {}
    for b, effect in ale.items():
        if not effect.any():
            buttons[b] = b  # no effect to match at this point of the game: keep the name
            continue
        scores = {
            r: int(np.sum((np.sign(effect) == np.sign(np.asarray(e))) & (effect != 0)))
            for r, e in retro.items()
        }
        best = max(scores.values())
        winners = [r for r, s in scores.items() if s == best]
        if best == 0 or len(winners) > 1:
            raise RuntimeError(f"Cannot tell which stable-retro button is ALE's {b} in {game}")
        buttons[b] = winners[0]
    return buttons


def build_atari_data() -> dict:
    """Compute ``atari.json``'s content from the installed ale-py and stable-retro.

    Loads every game of :func:`game_table` in ALE to read its minimal action set. Games where
    ALE ignores UP and DOWN (its paddle games, and joystick games that never read them) are
    probed on both emulators (stable-retro in a subprocess: their ROMs must be imported, see
    ``fastretro roms --from-ale``) to find which stable-retro button does what ALE's FIRE,
    RIGHT and LEFT do; those whose buttons differ get a ``"buttons"`` entry
    (:func:`game_buttons`).

    Raises:
        ImportError: ale-py is not installed.
        RuntimeError: the stable-retro probe failed.
    """
    import subprocess

    ale_py = _import_ale()
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    actions = sorted(ale_py.Action.__members__.values(), key=lambda a: a.value)
    if [a.value for a in actions] != list(range(len(actions))):
        raise ValueError(f"ALE's actions are not numbered 0..n-1: {actions}")
    names = [a.name for a in actions]
    combos = [_combo_of_action_name(n) for n in names]
    games, effects = {}, {}
    for game, rom in game_table().items():
        ale = _new_ale(ale_py, rom)
        games[game] = {"rom": rom, "minimal": [a.value for a in ale.getMinimalActionSet()]}
        if _ignores_vertical(ale, combos):
            effects[game] = _ale_effects(ale, names)
    if effects:
        run = subprocess.run(
            [sys.executable, "-c", _RETRO_PROBE, str(_PROBE_WARM), str(_PROBE_HOLD), *effects],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if run.returncode != 0:
            raise RuntimeError(
                f"The stable-retro button probe failed (are the ROMs imported? "
                f"`fastretro roms --from-ale`):\n{run.stderr}"
            )
        retro = json.loads(run.stdout)
        for game, ale_effect in effects.items():
            buttons = _match_buttons(game, ale_effect, retro[game])
            if any(b != r for b, r in buttons.items()):
                games[game]["buttons"] = buttons
    return {
        "about": (
            f"ALE's actions as stable-retro Atari2600 button combos, and the minimal action set "
            f'of each stable-retro game ALE runs ("buttons": the stable-retro button of each '
            f"of ALE's where they differ). Generated by `{_DATA_COMMAND}` from ale-py "
            f"{ale_py.__version__}."
        ),
        "ale_py": ale_py.__version__,
        "actions": [[n, c] for n, c in zip(names, combos)],
        "games": games,
    }


def write_atari_data(path: str | Path | None = None) -> dict:
    """Write :func:`build_atari_data` to ``path`` (default: the package's ``atari.json``).

    Returns:
        The data written.
    """
    path = Path(path) if path is not None else _data_path()
    data = build_atari_data()
    # One action and one game a line: the file stays short enough to read and to diff.
    actions = ",\n".join(f"  {json.dumps(a)}" for a in data["actions"])
    games = ",\n".join(f"  {json.dumps(g)}: {json.dumps(e)}" for g, e in data["games"].items())
    path.write_text(
        "{\n"
        f' "about": {json.dumps(data["about"])},\n'
        f' "ale_py": {json.dumps(data["ale_py"])},\n'
        f' "actions": [\n{actions}\n ],\n'
        f' "games": {{\n{games}\n }}\n'
        "}\n"
    )
    atari_data.cache_clear()
    return data


# ---------------------------------------------------------------------------------------------
# Action tables without stable-retro's emulator


class AtariActions:
    """What stable-retro's ``GameData`` tells action sets, for the Atari2600 core, without it.

    ``filter_action`` and ``valid_actions`` follow stable-retro's filtered actions over the
    core's button groups (``cores/stella.json``: ``[], UP, DOWN`` / ``[], LEFT, RIGHT`` /
    ``[], BUTTON``): in each group at most one combo stays pressed, and a mask that presses two
    of a group's combos (UP with DOWN) keeps neither; buttons in no group (SELECT, RESET) are
    dropped. ``tests/test_ale_backend.py`` compares both with stable-retro's own.
    """

    def __init__(self) -> None:
        import stable_retro

        groups = stable_retro.get_system_info("Atari2600")["actions"]
        # In the order stable-retro's valid_actions() gives them (sorted), which the discrete
        # action sets' decoding follows.
        self._groups = sorted([combo_mask(c) for c in group] for group in groups)

    def valid_actions(self) -> list[list[int]]:
        """The button masks of each group's combos (stable-retro's ``valid_actions()``)."""
        return [list(group) for group in self._groups]

    def filter_action(self, mask: int) -> int:
        """``mask`` as stable-retro's FILTERED action mode applies it."""
        out = 0
        for group in self._groups:
            bits = 0
            for combo in group:
                bits |= combo
            pressed = mask & bits
            if pressed in group:
                out |= pressed
        return out


# ---------------------------------------------------------------------------------------------
# The emulator


class AleEmulator(Emulator):
    """One stable-retro Atari2600 game on ALE's emulator (``ale_py.ALEInterface``).

    ALE is configured as a bare emulator: no sticky actions (``repeat_action_probability``
    0) and one frame per ``act`` (``frame_skip`` 1), since the worker does both itself. Several
    instances can live in one process.

    Attributes:
        game: the stable-retro game ID.
        rom: the ALE ROM name.
        decoder: the game's RAM variables (:class:`RamDecoder`).
        reward: ALE's own reward for the last frame (``act``'s result; 0 after :meth:`start`).
        screen_shape: the picture's ``(height, width)``: 210 x 160 for most games, as on
            stable-retro's Stella; 230 or 250 rows for a few (JourneyEscape; the PAL ROMs).
        gray_palette: uint8 ``(256,)``, the gray ALE shows for each colour code of
            :meth:`screen_codes` (its palette, found on the first frame); ``None`` where one
            frame could not tell the palettes apart.
    """

    backend = "ale"
    buttons = BUTTONS
    skips_drawing = False  # ALE draws every frame

    def __init__(
        self,
        game: str,
        *,
        seed: int = 0,
        info: Mapping | None = None,
        rom_path: str | Path | None = None,
    ) -> None:
        """Load ``game`` in a new ALE.

        Args:
            game: a stable-retro Atari2600 game ID in :func:`game_table`.
            seed: ALE's ``random_seed`` (its RNG serves sticky actions, which are off here).
            info: the RAM variables (``data.json``'s "info"); default: the integration's.
            rom_path: the ROM file; default: ale-py's ROM of ``game`` (hashing ale-py's ROMs
                once per process to find it).
        """
        ale_py = _import_ale()
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise InvalidArgumentError(f"Expected seed to be an int in [0, 2**31), got {seed!r}")
        self.game = game
        if rom_path is None:
            self.rom = ale_rom(game)
            rom_path = ale_rom_path(self.rom)
        else:
            self.rom = Path(rom_path).stem
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._ale_py = ale_py
        self._ale = ale_py.ALEInterface()
        self._ale.setInt("random_seed", seed)
        self._ale.setFloat("repeat_action_probability", 0.0)
        self._ale.setInt("frame_skip", 1)
        self._ale.loadROM(str(rom_path))
        self.decoder = RamDecoder(game_info(game) if info is None else info)
        # Action objects for act's Action overload (no int conversion per frame).
        self._actions = [ale_py.Action(a) for a in range(len(ale_py.Action.__members__))]
        self._mask_to_action = [self._actions[a] for a in mask_to_ale_table(game).tolist()]
        self._action = self._actions[0]
        # Two buffers of each kind of picture, used in turn: the worker keeps one picture while
        # it takes the next (max-pooling), as the Emulator seam allows. Each kind turns its own
        # pair: a snapshot's RGB screen taken between a max-pool's two frames leaves them be.
        self.screen_shape = shape = tuple(self._ale.getScreenDims())
        self._pictures = {
            kind: tuple(np.zeros(shape + extra, np.uint8) for _ in range(2))
            for kind, extra in (("rgb", (3,)), ("gray", ()), ("codes", ()))
        }
        self._turns = dict.fromkeys(self._pictures, 0)
        self.gray_palette = self._find_gray_palette()
        self._ram = np.zeros(RAM_SIZE, np.uint8)
        self.reward = 0
        #: Button filtering and combos for action sets (stable-retro's GameData's, without it).
        self.data = AtariActions()

    def _find_gray_palette(self) -> np.ndarray | None:
        # The frame ALE shows once the ROM is loaded (it has run ~130 frames and pressed RESET):
        # enough colours to tell NTSC, PAL and SECAM apart on each of the 32 games
        # (tests/test_ale_backend.py checks every one).
        codes, gray = self.screen_codes(), self.screen_gray()
        name = identify_palette(codes, gray)
        return None if name is None else gray_table(name)

    def start(self) -> None:
        """Begin an episode with ALE's ``reset_game()``, nothing pressed.

        Unlike stable-retro, which loads the integration's ``Start.state`` (a snapshot its
        author saved once the game was under way), ALE resets the console, runs 60 frames with
        nothing pressed, holds RESET for 4 frames (twice: once more after selecting the game
        mode) and then plays the game's own starting actions, so the first frames and the RAM
        differ from stable-retro's start.
        """
        self._ale.reset_game()
        self._action = self._actions[0]
        self.reward = 0

    def press(self, mask: int) -> None:
        """Hold ALE's action for button mask ``mask`` (``mask_to_ale_table(game)``)."""
        self._action = self._mask_to_action[mask]

    def frame(self, draw: bool = True) -> None:
        """Run one frame (``act``); ALE draws every frame whatever ``draw`` says.

        After ALE's end of game (:meth:`game_over`) ALE runs no frame until :meth:`start`.
        """
        self.reward = self._ale.act(self._action)

    def screen(self) -> np.ndarray:
        """The last frame, RGB uint8 ``(H, W, 3)``; a buffer reused by the call after next."""
        return self._next("rgb", self._ale.getScreenRGB)

    def screen_into(self, out: np.ndarray) -> np.ndarray:
        """Write the last frame into ``out`` (uint8 ``(H, W, 3)``, C-contiguous); return it.

        For a caller that keeps two frames (max-pooling) or writes into shared memory.
        """
        self._ale.getScreenRGB(out)
        return out

    def screen_gray(self) -> np.ndarray:
        """The last frame in ALE's grayscale, uint8 ``(H, W)``; reused by the call after next.

        ALE's gray is ``round(0.2989 R + 0.587 G + 0.114 B)`` of its palette colour, which is
        ``cv2.cvtColor``'s (and ``fastretro.kernels.rgb_to_gray_into``'s) luma of
        :meth:`screen` for every colour of ALE's NTSC palette: the same numbers, a third of the
        bytes. A buffer reused by the call after next.
        """
        return self._next("gray", self._ale.getScreenGrayscale)

    def _next(self, kind: str, grab) -> np.ndarray:
        turn = self._turns[kind] = self._turns[kind] ^ 1
        buffer = self._pictures[kind][turn]
        grab(buffer)
        return buffer

    def screen_codes(self) -> np.ndarray:
        """The last frame as TIA colour codes, uint8 ``(H, W)``; reused by the call after next.

        ``gray_palette[screen_codes()]`` is :meth:`screen_gray`: the workers look the grays up
        while they resize (``kernels.palette_area_resize_into``) instead of asking ALE to map
        every pixel (fastretro/runtime/backends/ale_palettes.py says what that saves).
        """
        return self._next("codes", self._ale.getScreen)

    def screen_gray_into(self, out: np.ndarray) -> np.ndarray:
        """Write the last frame in ALE's gray into ``out`` (uint8 ``(H, W)``); return it."""
        self._ale.getScreenGrayscale(out)
        return out

    def ram(self) -> np.ndarray:
        """The 128 bytes of RAM (data.json address ``A`` is index ``A - 0x80``); reused buffer."""
        self._ale.getRAM(self._ram)
        return self._ram

    def variables(self) -> dict[str, int]:
        """The integration's RAM variables, decoded as stable-retro's ``lookup_all()``."""
        self._ale.getRAM(self._ram)
        return self.decoder(self._ram)

    def save_state(self) -> bytes:
        """ALE's whole state, its RNG included (``cloneState(include_rng=True)``), as bytes."""
        return self._ale.cloneState(include_rng=True).serialize()

    def load_state(self, state: bytes) -> None:
        """Go back to a state from :meth:`save_state` (of the same game).

        Raises:
            InvalidArgumentError: ``state`` is not a state of this game (the emulator is left
                as it was).
        """
        # ALE checks the cartridge's MD5 and the format only part-way through a restore, and its
        # error crosses nanobind as a bare SystemError: keep the current state to go back to.
        current = self._ale.cloneState(include_rng=True)
        try:
            self._ale.restoreState(self._ale_py.ALEState(state))
        except (SystemError, RuntimeError, TypeError):
            self._ale.restoreState(current)
            raise InvalidArgumentError(
                f"Expected a state of {self.game} from save_state(), got {len(state)} bytes that "
                "ALE does not accept"
            ) from None

    def state_capacity(self) -> int:
        """Twice the state's size now: ALE's serialized state grows a little as a game runs."""
        return 2 * len(self.save_state())

    def game_over(self) -> bool:
        """ALE's end of game; ALE then refuses to run frames until :meth:`start`."""
        return self._ale.game_over(with_truncation=False)

    def lives(self) -> int:
        """ALE's count of the player's lives (what ``episodic_life`` watches)."""
        return self._ale.lives()

    def close(self) -> None:
        """Drop the ALE (its memory is freed with it)."""
        self._ale = None


# ---------------------------------------------------------------------------------------------
# The command line: regenerate the package data


def main(argv: list[str] | None = None) -> int:
    """``python -m fastretro.runtime.backends.ale --write-data [--path PATH]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fastretro.runtime.backends.ale",
        description="Regenerate fastretro's Atari data (ALE's action sets) from ale-py.",
    )
    parser.add_argument("--write-data", action="store_true", help="write atari.json")
    parser.add_argument("--path", default=None, help="where to write it (default: the package's)")
    args = parser.parse_args(argv)
    if not args.write_data:
        parser.print_help()
        return 2
    try:
        data = write_atari_data(args.path)
    except ImportError as e:
        print(e, file=sys.stderr)
        return 1
    path = args.path or _data_path()
    print(f"wrote {path}: ALE's {len(data['actions'])} actions, {len(data['games'])} games")
    return 0


if __name__ == "__main__":
    sys.exit(main())
