"""Emulate a Genesis frame without drawing it, for frames whose picture nobody looks at.

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

Everything is checked before it is used: the core must be Genesis Plus GX in Mega Drive mode
(Sega CD, Master System and Game Gear games take other paths through ``retro_run``), the
symbols must be functions of this exact file, and ``retro_run``'s address found through the
dynamic loader must match the symbol table's. Otherwise :func:`find_headless_frame` returns
``None`` and the worker draws every frame, as before.

What differs from drawing: the VDP's sprite-overflow and sprite-collision status bits are set
while drawing, so on a skipped frame a game that polls them sees them clear. The tests check
that RAM, rewards and observations match frame for frame on the shipped game; pass
``skip_rendering=False`` to ``VecRetroEnv`` for games that rely on those bits.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

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


@dataclass(frozen=True)
class HeadlessFrame:
    """Addresses, in this process, of the two calls that make a frame without its picture."""

    frame_gen: int  # void system_frame_gen(int do_skip)
    audio_update: int  # int audio_update(int16 *buffer)


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
    symbols = _symbol_addresses(path)
    if symbols is None:
        return None
    try:
        lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
    except OSError:
        return None
    # The loader's address of retro_run, less its symbol's value, must be where the file is
    # mapped: otherwise the symbol table on disk is not the library in memory.
    if ctypes.cast(lib.retro_run, ctypes.c_void_p).value - symbols["retro_run"] != base:
        return None
    system_hw = ctypes.c_uint8.from_address(base + symbols["system_hw"]).value
    if system_hw == SYSTEM_MCD or (system_hw & SYSTEM_PBC) != SYSTEM_MD:
        return None
    return HeadlessFrame(
        frame_gen=base + symbols["system_frame_gen"],
        audio_update=base + symbols["audio_update"],
    )


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


def _symbol_addresses(path: str) -> dict[str, int] | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            table = ELFFile(f).get_section_by_name(".symtab")
            if table is None:  # a stripped build
                return None
            found = {}
            for sym in table.iter_symbols():
                kind = _SYMBOLS.get(sym.name)
                if kind is not None and sym["st_info"]["type"] == kind and sym["st_value"]:
                    found[sym.name] = sym["st_value"]
    except (OSError, ELFError):
        return None
    return found if len(found) == len(_SYMBOLS) else None
