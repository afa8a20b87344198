"""The RAM variables of stable-retro's integrations, decoded from a copy of the console's RAM.

``data.json``'s "info" variables, decoded from ``ALEInterface.getRAM()`` (or the Genesis core's
RAM, fastretro/runtime/backends/libretro.py) exactly as stable-retro's ``GameData.lookup_all()``
decodes them from its own view of that RAM: what
:class:`~fastretro.runtime.backends.ale.AleEmulator` reports as ``variables()``, and what the
scenarios read.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.jit import JIT

#: Where stable-retro maps the 2600's 128 bytes of RAM (``rambase`` in ``cores/stella.json``):
#: a data.json address ``A`` is ``getRAM()[A - RAM_BASE]``.
RAM_BASE = 0x80
RAM_SIZE = 128

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
    """``data.json``'s RAM variables, decoded from a console's RAM as stable-retro does.

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
    (0x80-0xFF on the 2600) is left out, as ``lookup_all()`` leaves it out; one that starts in
    RAM but runs past its end (stable-retro would read past the RAM block) is left out too. Both
    are listed in :attr:`skipped` (no stable-retro Atari integration has either).

    Some cores keep their RAM in words of the host's byte order that stable-retro reads through
    an overlay (``cores/*.json``'s "overlay"): Genesis Plus GX's 68000 RAM is little-endian
    16-bit words that stable-retro reads as big-endian ones, so byte ``i`` of the console's RAM
    is byte ``i ^ 1`` of the core's. ``swap`` is that XOR, applied to every byte's index.

    Attributes:
        names: the decoded variables, in ``data.json`` order.
        plan: uint64 ``(len(names), 20)``, the compiled plan.
        digits: uint64 ``(3, 256)``, the value of each byte in binary, BCD and one-digit BCD
            (the table column 16 of a plan row selects).
        size: the RAM's length in bytes.
        skipped: ``{name: why}`` for the variables left out.
    """

    def __init__(
        self, info: Mapping, base: int = RAM_BASE, size: int = RAM_SIZE, swap: int = 0
    ) -> None:
        """Compile ``info`` (``data.json``'s "info") for a RAM of ``size`` bytes at ``base``.

        ``swap``: the XOR that turns the console's byte index into the core's (0: none; 1 for
        a 16-bit overlay on a little-endian host). ``size`` must be a multiple of ``swap + 1``.
        """
        if swap < 0 or size % (swap + 1):
            raise InvalidArgumentError(
                f"Expected swap >= 0 and size a multiple of swap + 1, got {swap} and {size}"
            )
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
            row, why = _plan_row(var, base, size, swap)
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
        self.digits = _DIGITS
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


def _plan_row(var: Mapping, base: int, size: int, swap: int) -> tuple[np.ndarray | None, str]:
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
        row[_COL_INDEX + k] = (address - base + k) ^ swap
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
