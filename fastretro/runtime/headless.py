"""Emulate Genesis frames without the work nobody sees or hears: pictures and FM sound.

stable-retro's ``em.step`` runs libretro's ``retro_run``, which draws every frame: on Genesis
Plus GX the VDP's line renderer takes ~40% of a frame's time (``perf``, Airstriker, random
buttons; an undrawn frame measured 0.55-0.63 of a drawn one, bench/bench_headless.py). Most
frames of an RL step are never seen: with frameskip 4, only the last one (two with
max-pooling) becomes an observation, and JERK looks at none. The core can run a frame without
drawing it: ``system_frame_gen(1)`` is what its own frontends call to skip frames. The CPUs,
the sound chips, DMA, interrupts and the VDP's counters run as before; only the per-line
rendering (and the sprite parsing that feeds it) is left out.

libretro does not export that function, but stable-retro ships the core with its symbol table,
so this module finds it there, next to the exported ``retro_run`` that anchors the library's
load address. ``retro_run`` is then replaced, for a skipped frame, by what it does minus the
picture: ``system_frame_gen(1)`` and ``audio_update`` (which advances the sound chips' state;
the samples go to a scratch buffer, as nobody reads them either). The worker
(ext/worker_loop.pyx) decides which frames need their picture.

The libretro backend (fastretro/runtime/backends/libretro.py) loads a private copy of the core
per emulator, each at its own address: :func:`headless_frame_of` and :func:`silent_fm_of` find
the same entry points in one copy, and ext/libretro.pyx calls them with that copy's state.

Everything is checked before it is used: the core must be Genesis Plus GX in Mega Drive mode
(Sega CD, Master System and Game Gear games take other paths through ``retro_run``), the
symbols must be functions of this exact file, and ``retro_run``'s address found through the
dynamic loader must match the symbol table's. Otherwise :func:`find_headless_frame` returns
``None`` and the worker draws every frame, as before.

What differs from drawing: the VDP's sprite-overflow and sprite-collision status bits are set
while drawing, so on a skipped frame a game that polls them sees them clear. The tests check
that RAM, rewards and observations match frame for frame on the shipped game; pass
``skip_rendering=False`` to ``VecRetroEnv`` for games that rely on those bits.

The FM chip without its sound (:func:`find_silent_fm`): nobody listens to a worker's audio
either, and on Airstriker's contest config the YM2612's synthesis (``YM2612Update`` and its
``chan_calc``) takes ~24% of the core's time (``perf``). The core calls it through one function
pointer (``YM_Update``), which the worker points at its own function
(ext/worker_loop.pyx): while both of the chip's timers are stopped it writes silence; while a
timer runs it calls the real chip. The timers are all a game can observe of the FM chip (its
status register holds their overflow flags; the rest is write-only), so the game runs exactly
as before and only the FM part of the audio is lost. That needs one field of the chip's state,
its mode register, whose offset is known only for the builds listed in
:data:`YM2612_MODE_OFFSET` (by the file's SHA-256); other builds keep their sound.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import struct
from dataclasses import dataclass

import numpy as np

#: The library stable-retro loads for Genesis / Mega Drive games.
GENESIS_CORE = "genesis_plus_gx_libretro.so"

# Genesis Plus GX's system_hw codes (core/system.h): retro_run calls system_frame_gen only when
# (system_hw & SYSTEM_PBC) == SYSTEM_MD and system_hw != SYSTEM_MCD.
SYSTEM_MD = 0x80
SYSTEM_PBC = 0x81
SYSTEM_MCD = 0x84

# Stereo int16 samples one frame can produce: 44.1 kHz / ~50 Hz (PAL) is 882 per channel; the
# core's own buffer holds 3068 values. Over twice that, to be safe.
AUDIO_SCRATCH_VALUES = 8192

_SYMBOLS = {
    "retro_run": "STT_FUNC",
    "system_frame_gen": "STT_FUNC",
    "audio_update": "STT_FUNC",
    "system_hw": "STT_OBJECT",
}
_FM_SYMBOLS = {
    "retro_run": "STT_FUNC",
    "system_hw": "STT_OBJECT",
    "YM_Update": "STT_OBJECT",  # static void (*YM_Update)(int *buffer, int length)
    "YM2612Update": "STT_FUNC",
    "ym2612": "STT_OBJECT",
}

#: Offset of the mode register (``ym2612.OPN.ST.mode``: bit 0 runs timer A, bit 1 timer B) in
#: the ``ym2612`` state, per build of the core (SHA-256 of the file). Read off the build's own
#: code: ``YM2612Update`` tests ``mode & 0xC0`` at ``ym2612+0x96c`` before anything else, and
#: ``YM2612Read`` returns the status byte two bytes before it.
YM2612_MODE_OFFSET = {
    # stable-retro 1.0.1's manylinux_2_28 x86_64 wheels: cp310 to cp313 ship this same file.
    "65a83a22c7b9e836698487b018739966136aed342885dd7959b581f0d454210a": 0x96C,
}


@dataclass(frozen=True)
class HeadlessFrame:
    """Addresses, in this process, of the two calls that make a frame without its picture."""

    frame_gen: int  # void system_frame_gen(int do_skip)
    audio_update: int  # int audio_update(int16 *buffer)


@dataclass(frozen=True)
class SilentFM:
    """Addresses, in this process, of what it takes to run the FM chip without its sound."""

    slot: int  # the core's YM_Update function pointer
    update: int  # void YM2612Update(int *buffer, int length), the real chip
    mode: int  # the chip's mode register (an int; timers run while bit 0 or 1 is set)


def find_silent_fm() -> SilentFM | None:
    """Where to switch off the Genesis core's FM synthesis in this process, or ``None``.

    Call it in a worker after its stable-retro env exists. ``None`` when no Genesis Plus GX
    core is loaded, when the game is not a Mega Drive game, when the core's build is not one
    whose state layout is known (:data:`YM2612_MODE_OFFSET`), or when ``YM_Update`` does not
    point at the MAME YM2612 (another FM core was chosen).
    """
    loaded = _loaded_core()
    if loaded is None:
        return None
    path, base = loaded
    return silent_fm_of(path, base, _loaded_retro_run(path))


def silent_fm_of(path: str, base: int, retro_run: int | None) -> SilentFM | None:
    """:func:`find_silent_fm` for one loaded copy of the core file ``path``.

    Args:
        path: the core's file (its symbol table and hash are read from it).
        base: where the copy is loaded.
        retro_run: the loader's address of the copy's ``retro_run`` (``None``: unknown), which
            must be ``base`` plus the symbol's value for the file to be the copy's.
    """
    offset = YM2612_MODE_OFFSET.get(_file_sha256(path))
    symbols = _symbol_addresses(path, _FM_SYMBOLS)
    if offset is None or symbols is None or not _is_mega_drive(base, symbols, retro_run):
        return None
    slot = base + symbols["YM_Update"]
    update = base + symbols["YM2612Update"]
    if ctypes.c_void_p.from_address(slot).value != update:
        return None
    return SilentFM(slot=slot, update=update, mode=base + symbols["ym2612"] + offset)


def read_core(path: str) -> None:
    """Read the core's file now (its hash and symbols), for processes forked from this one.

    Each process asks once per core (both answers are cached); a worker forked after this call
    finds them in the memory it shares with the pool, instead of reading the core itself.
    Nothing happens if there is no such file.
    """
    path = os.path.realpath(path)  # as /proc/self/maps names it
    if os.path.isfile(path):
        try:
            _file_sha256(path)
        except OSError:
            return  # the worker will not read it either: it keeps its sound
        _core_symbols(path)


@functools.cache
def _file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def find_headless_frame() -> HeadlessFrame | None:
    """The headless-frame entry points of the Genesis core loaded in this process, or ``None``.

    Call it in a worker after its stable-retro env exists (the core is loaded then). ``None``
    when no Genesis Plus GX core is loaded, when the loaded game is not a Mega Drive game, or
    when anything about the library does not check out.
    """
    loaded = _loaded_core()
    if loaded is None:
        return None
    path, base = loaded
    return headless_frame_of(path, base, _loaded_retro_run(path))


def headless_frame_of(path: str, base: int, retro_run: int | None) -> HeadlessFrame | None:
    """:func:`find_headless_frame` for one loaded copy of the core file ``path``.

    Args:
        path: the core's file (its symbol table is read from it).
        base: where the copy is loaded.
        retro_run: the loader's address of the copy's ``retro_run`` (``None``: unknown), which
            must be ``base`` plus the symbol's value for the file to be the copy's.
    """
    symbols = _symbol_addresses(path, _SYMBOLS)
    if symbols is None or not _is_mega_drive(base, symbols, retro_run):
        return None
    return HeadlessFrame(
        frame_gen=base + symbols["system_frame_gen"],
        audio_update=base + symbols["audio_update"],
    )


def _loaded_retro_run(path: str) -> int | None:
    """The dynamic loader's address of ``retro_run`` in the library ``path`` loaded here."""
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    return ctypes.cast(lib.retro_run, ctypes.c_void_p).value


def _is_mega_drive(base: int, symbols: dict[str, int], retro_run: int | None) -> bool:
    """Whether the symbols are the loaded library's and it runs a Mega Drive game."""
    # The loader's address of retro_run, less its symbol's value, must be where the file is
    # mapped: otherwise the symbol table on disk is not the library in memory.
    if retro_run is None or retro_run - symbols["retro_run"] != base:
        return False
    system_hw = ctypes.c_uint8.from_address(base + symbols["system_hw"]).value
    return system_hw != SYSTEM_MCD and (system_hw & SYSTEM_PBC) == SYSTEM_MD


def _loaded_core() -> tuple[str, int] | None:
    # /proc/self/maps names every file mapped into this process, the core stable-retro
    # dlopened included; its mapping at file offset 0 starts at the library's load address.
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and os.path.basename(fields[5].rstrip()) == GENESIS_CORE:
                    if int(fields[2], 16) == 0:
                        return fields[5].rstrip(), int(fields[0].split("-")[0], 16)
    except (OSError, ValueError):
        pass
    return None


def _symbol_addresses(path: str, wanted: dict[str, str]) -> dict[str, int] | None:
    """The values of the ``wanted`` symbols (name -> type) in the file, or None if one lacks."""
    table = _core_symbols(path)
    if table is None or any(table.get(name, ("", 0))[0] != kind for name, kind in wanted.items()):
        return None
    return {name: table[name][1] for name in wanted}


@functools.cache
def _core_symbols(path: str) -> dict[str, tuple[str, int]] | None:
    # One pass over the symbol table (~20k entries) for everything this module looks up, read
    # with numpy: pyelftools parsed it entry by entry in 0.15-1.1 s, in every worker
    # (bench/bench_size.py --breakdown); this takes a few milliseconds.
    names = {**_SYMBOLS, **_FM_SYMBOLS}
    try:
        with open(path, "rb") as f:
            return elf_symbols(f, names)
    except (OSError, ValueError):
        return None


#: ``st_info``'s low nibble, for the symbol types looked up here.
_SYMBOL_TYPES = {1: "STT_OBJECT", 2: "STT_FUNC"}


def _elf_layouts(wide: bool, order: str) -> tuple[np.dtype, np.dtype, str, int]:
    """An ELF class's section header and symbol records, and ``e_shoff``'s format and offset."""
    word, addr = order + "u4", order + ("u8" if wide else "u4")
    section = np.dtype(
        [("name", word), ("type", word), ("flags", addr), ("addr", addr), ("offset", addr)]
        + [("size", addr), ("link", word), ("info", word), ("align", addr), ("entsize", addr)]
    )
    if wide:  # Elf64_Sym
        fields = [("name", word), ("info", "u1"), ("other", "u1"), ("shndx", order + "u2")]
        symbol = np.dtype(fields + [("value", addr), ("size", addr)])
        return section, symbol, order + "Q", 0x28
    # Elf32_Sym
    fields = [("name", word), ("value", addr), ("size", addr), ("info", "u1"), ("other", "u1")]
    return section, np.dtype(fields + [("shndx", order + "u2")]), order + "I", 0x20


def elf_symbols(f, wanted: dict[str, str]) -> dict[str, tuple[str, int]] | None:
    """The ``wanted`` symbols of an ELF file's ``.symtab``, read from the open file ``f``.

    Args:
        f: the file, opened in binary mode.
        wanted: name -> ``"STT_FUNC"`` or ``"STT_OBJECT"``.

    Returns:
        name -> (type, value), for the symbols of the wanted type with a nonzero value (where
        a name is defined twice, the later entry wins): what filtering pyelftools'
        ``ELFFile(f).get_section_by_name(".symtab").iter_symbols()`` so gives. ``None`` for a
        stripped file (no ``.symtab``).

    Raises:
        ValueError: ``f`` is not an ELF file, or a table lies outside it.
    """
    sections, section_names, symbol = _section_headers(f)
    symtab = next(
        (s for s in sections if _string_at(section_names, int(s["name"])) == b".symtab"), None
    )
    if symtab is None:
        return None
    if int(symtab["link"]) >= len(sections):
        raise ValueError("the symbol table's string table is missing")
    strings = _read_section(f, sections[int(symtab["link"])])
    table = np.frombuffer(_read_section(f, symtab), symbol)
    found = {}
    for name, kind in wanted.items():
        key = name.encode() + b"\0"
        # Every offset of the string table where this name starts: the linker may store it as
        # the tail of a longer one.
        offsets, at = [], strings.find(key)
        while at >= 0:
            offsets.append(at)
            at = strings.find(key, at + 1)
        for i in np.flatnonzero(np.isin(table["name"], offsets)):
            entry = table[i]
            if _SYMBOL_TYPES.get(int(entry["info"]) & 0xF) == kind and int(entry["value"]):
                found[int(i)] = (name, (kind, int(entry["value"])))
    return dict(pair for _, pair in sorted(found.items()))


def elf_sections(f) -> dict[str, tuple[int, int, int, int, int]]:
    """An ELF file's sections: name -> ``(file offset, size, address, flags, type)``.

    Raises:
        ValueError: ``f`` (opened in binary mode) is not an ELF file, or a table lies outside it.
    """
    sections, names, _ = _section_headers(f)
    return {
        _string_at(names, int(s["name"])).decode(errors="replace"): (
            int(s["offset"]),
            int(s["size"]),
            int(s["addr"]),
            int(s["flags"]),
            int(s["type"]),
        )
        for s in sections
    }


def _section_headers(f) -> tuple[np.ndarray, bytes, np.dtype]:
    """The section header table, the section names' string table and the symbol record."""
    f.seek(0)
    ident = f.read(16)
    if (
        len(ident) < 16
        or ident[:4] != b"\x7fELF"
        or ident[4] not in (1, 2)
        or ident[5] not in (1, 2)
    ):
        raise ValueError("not an ELF file")
    order = "<" if ident[5] == 1 else ">"
    section, symbol, shoff_format, shoff_at = _elf_layouts(ident[4] == 2, order)
    (shoff,) = struct.unpack(shoff_format, _read_at(f, shoff_at, struct.calcsize(shoff_format)))
    # e_shentsize, e_shnum and e_shstrndx close the header, after e_flags (4 bytes) and
    # e_ehsize, e_phentsize, e_phnum (2 each).
    tail = shoff_at + struct.calcsize(shoff_format) + 4 + 3 * 2
    entsize, count, names_at = struct.unpack(order + "HHH", _read_at(f, tail, 6))
    if entsize != section.itemsize or not 0 <= names_at < count:
        raise ValueError("unexpected ELF section headers")
    sections = np.frombuffer(_read_at(f, shoff, count * entsize), section)
    return sections, _read_section(f, sections[names_at]), symbol


def _read_at(f, offset: int, size: int) -> bytes:
    f.seek(offset)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("ELF table outside the file")
    return data


def _read_section(f, header) -> bytes:
    return _read_at(f, int(header["offset"]), int(header["size"]))


def _string_at(strings: bytes, offset: int) -> bytes:
    return strings[offset : strings.find(b"\0", offset)]
