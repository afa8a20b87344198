"""stable-retro's Genesis core on fastretro's own libretro frontend: several per process.

stable-retro allows one emulator per process: its frontend loads a core's shared library once,
and a core keeps its state in that library's globals. :class:`LibretroEmulator` runs the same
core file (Genesis Plus GX, ``stable_retro/cores/genesis_plus_gx_libretro.so``) through
fastretro's frontend (ext/libretro.pyx), which gives each emulator a private copy of the
library, so one worker process may hold several Genesis emulators, as the ALE backend does.

Everything an env sees follows stable-retro: the core is given the same answers by its
frontend, the ROM is loaded and started the same way (one frame when the ROM is loaded, one
more when the env is made, then the integration's start state and one frame per episode), the
screen is converted as ``em.get_screen()`` converts it, the RAM variables are decoded as
``GameData.lookup_all()`` decodes them (:class:`~fastretro.runtime.backends.ale_ram.RamDecoder`
over the core's RAM, through stable-retro's byte-swapping overlay), and the buttons are
filtered as its ``GameData`` filters them. ``tests/runtime/test_libretro.py`` compares screens,
variables and rewards with plain stable-retro frame by frame.

Movies (``.bk2``) are written as stable-retro writes them (:mod:`.bk2`). Only Mega Drive games
run here (other systems' cores have not been checked), and without Lua scenarios
(stable-retro's own engine): :func:`refusal` says why a pool cannot run on this backend.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
from collections.abc import Sequence

import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.backends.ale_ram import RamDecoder
from fastretro.runtime.backends.base import ConsoleActions, Emulator
from fastretro.runtime.backends.bk2 import MovieWriter
from fastretro.runtime.games import GameSetup, integrations
from fastretro.runtime.headless import (
    AUDIO_SCRATCH_VALUES,
    elf_sections,
    headless_frame_of,
    silent_fm_of,
)

#: The one system this backend runs, and the picture stable-retro takes of it (``width,
#: height``: its ``Emulator::fixScreenSize`` for a Mega Drive ROM).
SYSTEM = "Genesis"
SCREEN_SIZE = (320, 224)

#: stable-retro's RAM overlays (``cores/*.json``'s "overlay") this backend reads, as the XOR
#: they apply to a byte's index on a little-endian host.
_OVERLAY_SWAP = {None: 0, ("=", ">", 2): 1}

# ELF: a section that takes memory when loaded, a section with no bytes in the file (.bss).
_SHF_ALLOC, _SHT_NOBITS = 0x2, 8


def unread_file_ranges(core_path: str, base: int) -> list[tuple[int, int]]:
    """The byte ranges of a loaded copy of ``core_path`` (at ``base``) that nothing reads now.

    Each copy of the core is a memory file that holds the whole library while it is loaded,
    and each copy's pages are its own. Once the loader is done, three parts of it are read by
    no one: the relocations (``.rela.dyn``, over half of Genesis Plus GX's file, read once
    while loading, ``RTLD_NOW``), the pointer tables of ``.data.rel.ro`` where the relocations
    wrote every one of its pages (each is then a private copy in anonymous memory: the page
    map says so, page by page), and the sections the loader maps nowhere (the symbol table).
    ``[]`` where the file cannot be read.
    """
    try:
        with open(core_path, "rb") as f:
            sections = elf_sections(f)
            size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError):
        return []
    ranges = []
    if ".rela.dyn" in sections:
        offset, length = sections[".rela.dyn"][:2]
        ranges.append((offset, offset + length))
    if ".data.rel.ro" in sections:
        offset, length, address = sections[".data.rel.ro"][:3]
        if _copied_on_write(base + address, length):
            ranges.append((offset, offset + length))
    loaded = [
        offset + length
        for offset, length, _, flags, kind in sections.values()
        if flags & _SHF_ALLOC and kind != _SHT_NOBITS
    ]
    if loaded:
        ranges.append((max(loaded), size))
    return ranges


def _copied_on_write(address: int, length: int) -> bool:
    """Whether every whole page of ``[address, address + length)`` is a private anonymous copy.

    ``/proc/self/pagemap``: one 64-bit entry a page; bit 63 present, 62 swapped, 61 a page of a
    file (or shared memory). A page still read from the file would read zeros once freed.
    """
    page = os.sysconf("SC_PAGE_SIZE")
    first, end = -(-address // page), (address + length) // page
    if end <= first:
        return False
    try:
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(first * 8)
            entries = np.frombuffer(f.read((end - first) * 8), np.uint64)
    except OSError:
        return False
    if len(entries) != end - first:
        return False
    in_memory = (entries >> np.uint64(62)) != 0  # present or swapped
    file_page = ((entries >> np.uint64(61)) & np.uint64(1)) != 0
    return bool(np.all(in_memory & ~file_page))


def refusal(config, setups: Sequence[GameSetup]) -> str | None:
    """Why the libretro backend cannot run these envs as ``config`` asks, or ``None``."""
    from fastretro.runtime.games import IMPORT_HINT

    missing = sorted({s.game for s in setups if not s.rom_imported})
    if missing:
        return f"the ROM of {missing[0]} is not imported into stable-retro: {IMPORT_HINT}"
    others = sorted({s.game for s in setups if game_system(s.game) != SYSTEM})
    if others:
        return (
            f"{others[0]} runs on {game_system(others[0])}, and the libretro backend runs only "
            "Genesis (Mega Drive) games"
        )
    crops = sorted({s.game for s in setups if "crops" in scenario_json(s)})
    if crops:
        return f"the scenario of {crops[0]} has per-player 'crops', which only stable-retro reads"
    unplanned = [s for s in setups if s.scenario_plan is None]
    if config.scenario_engine == "stable-retro" or unplanned:
        why = unplanned[0].scenario_plan_why_not if unplanned else "scenario_engine=stable-retro"
        return f"the scenario needs stable-retro's own engine ({why})"
    return None


def game_system(game: str) -> str:
    """stable-retro's system of ``game``'s imported ROM (``"Genesis"``, ``"Snes"``, ...)."""
    import stable_retro

    return stable_retro.get_romfile_system(stable_retro.data.get_romfile_path(game, integrations()))


def start_state(setup: GameSetup) -> bytes | None:
    """The save state an episode starts from, as ``RetroEnv`` finds it; ``None``: the ROM's own.

    A path or a state of the integration named by ``setup.state``, else the integration's
    ``metadata.json`` ``default_player_state[0]`` or ``default_state``. States are stored
    gzip'd. The emulators of one process that start from the same state share its bytes (a
    Genesis state is about a megabyte, and a worker may hold many emulators).
    """
    return _start_state(setup.game, setup.state)


def start_state_name(game: str, state: str | None) -> str | None:
    """The name (or path) of the state ``RetroEnv`` starts ``game`` from; ``None``: none."""
    import stable_retro.data as retro_data

    if state is not None:
        return state
    try:
        with open(retro_data.get_file_path(game, "metadata.json", integrations())) as f:
            metadata = json.load(f)
    except (OSError, TypeError, json.JSONDecodeError):
        metadata = {}
    players = metadata.get("default_player_state") or []
    return players[0] if players else metadata.get("default_state")


@functools.lru_cache(maxsize=16)
def _start_state(game: str, state: str | None) -> bytes | None:
    import stable_retro.data as retro_data

    name = start_state_name(game, state)
    if name is None:
        return None
    path = name if os.path.isfile(name) else None
    if path is None:
        path = retro_data.get_file_path(
            game, name if name.endswith(".state") else name + ".state", integrations()
        )
    with gzip.open(path, "rb") as f:
        return f.read()


def scenario_json(setup: GameSetup) -> dict:
    """The env's scenario file, as stable-retro reads it (its ``crop`` among the rest)."""
    from fastretro.runtime.games import _scenario_path

    with open(_scenario_path(setup.game, setup.scenario)) as f:
        return json.load(f)


class LibretroEmulator(Emulator):
    """A Genesis game on a private copy of stable-retro's Genesis Plus GX core.

    The two shortcuts of fastretro/runtime/headless.py are taken per copy, where the config
    allows them and the core checks out: frames whose picture nobody uses run without drawing
    it, and the FM chip runs without its sound while its timers are stopped.

    Args:
        setup: the env's game, state and scenario (a Mega Drive game; see :func:`refusal`).
        record_dir: a folder for one ``.bk2`` per episode, named and written as stable-retro
            names and writes them (:mod:`.bk2`), or ``None``.
        skip_rendering: run undrawn frames without their picture.
        skip_audio: silence the FM chip while its timers are stopped, where the build allows it.

    Attributes:
        core: the emulator (:class:`fastretro.runtime._ext.libretro.Core`).
        decoder: the game's RAM variables (:class:`RamDecoder` over the core's RAM).

    Raises:
        InvalidArgumentError: the game is not a Mega Drive game.
    """

    backend = "libretro"

    def __init__(
        self,
        setup: GameSetup,
        record_dir: str | None = None,
        skip_rendering: bool = True,
        skip_audio: bool = True,
    ) -> None:
        import stable_retro

        from fastretro.runtime._ext.libretro import Core, decode_plan_into

        system = game_system(setup.game)
        if system != SYSTEM:
            raise InvalidArgumentError(
                f"Cannot run {setup.game} on the libretro backend: it runs on {system}, and the "
                "libretro backend runs only Genesis (Mega Drive) games"
            )
        info = stable_retro.get_system_info(system)
        self.game, self.buttons = setup.game, setup.buttons
        crop = scenario_json(setup).get("crop")
        #: The scenario's crop (``x, y, w, h``; zeros: none), as ``GameData.crop_info(0)``.
        self._crop = (0, 0, 0, 0) if crop is None else tuple(int(v) for v in crop[:4])
        self._initial = start_state(setup)
        self._record_dir, self._movie, self._movies, self._mask = record_dir, None, 0, 0
        state_name = start_state_name(setup.game, setup.state) or "none"
        #: stable-retro's movie names: GAME-STATE-NNNNNN.bk2.
        self._movie_name = f"{setup.game}-{os.path.splitext(os.path.basename(state_name))[0]}"
        rom = stable_retro.data.get_original_romfile_path(setup.game, integrations())
        core_path = os.path.realpath(stable_retro.get_core_path(system))
        self.core = Core(core_path, stable_retro.core_path())
        try:
            self.core.load_game(rom, *SCREEN_SIZE)
            # RetroEnv runs one more frame once its data is configured.
            self.core.run()
            self._take_shortcuts(core_path, skip_rendering, skip_audio)
            self.core.release_file_ranges(unread_file_ranges(core_path, self.core.base_address))
        except BaseException:
            self.core.close()
            raise
        self._ram = self.core.system_ram()
        overlay = info.get("overlay")
        swap = _OVERLAY_SWAP[None if overlay is None else tuple(overlay)]
        data_json = stable_retro.data.get_file_path(setup.game, "data.json", integrations())
        variables = {}
        if data_json:
            with open(data_json) as f:
                variables = json.load(f).get("info", {})
        self.decoder = RamDecoder(variables, info["rambase"], len(self._ram), swap)
        self._values = np.zeros(len(self.decoder.names), np.int64)
        self._decode = decode_plan_into
        #: Button filtering and combos for action sets (stable-retro's GameData's, without it).
        self.data = ConsoleActions(system, self.buttons)
        # Two pictures used in turn: the worker keeps one while it takes the next (max-pooling).
        shape = (self.core.height, self.core.width, 3)
        self._pictures = (np.zeros(shape, np.uint8), np.zeros(shape, np.uint8))
        self._turn = 0

    def _take_shortcuts(self, core_path: str, skip_rendering: bool, skip_audio: bool) -> None:
        # The headless entry points of this copy: its own load address, checked against where
        # the loader found its retro_run, and its own system_hw (a Mega Drive game).
        base, retro_run = self.core.base_address, self.core.symbol("retro_run")
        headless = headless_frame_of(core_path, base, retro_run) if skip_rendering else None
        if headless is not None:
            self.core.use_undrawn_frame(
                headless.frame_gen, headless.audio_update, AUDIO_SCRATCH_VALUES
            )
        self.skips_drawing = headless is not None
        silent_fm = silent_fm_of(core_path, base, retro_run) if skip_audio else None
        if silent_fm is not None:
            self.core.silence_fm(silent_fm.slot, silent_fm.update, silent_fm.mode)
        self.skips_audio = silent_fm is not None
        self._run, self._run_undrawn = self.core.run, self.core.run_undrawn

    def start(self) -> None:
        """Begin an episode as ``RetroEnv.reset``: the start state, nothing pressed, a frame."""
        if self._initial is not None and not self.core.unserialize(self._initial):
            raise InvalidArgumentError(f"Genesis Plus GX refused the start state of {self.game}")
        self.core.press(0)
        self._mask = 0
        self.core.run()
        if self._record_dir is not None:
            self._next_movie()

    def _next_movie(self) -> None:
        # The finished episode's movie is written now, complete, as stable-retro's is.
        if self._movie is not None:
            self._movie.close()
        path = os.path.join(self._record_dir, f"{self._movie_name}-{self._movies:06d}.bk2")
        self._movie = MovieWriter(path, self.game, SYSTEM, self.buttons, self._initial)
        self._movies += 1

    def press(self, mask: int) -> None:  # noqa: D102
        self._mask = mask
        self.core.press(mask)

    def frame(self, draw: bool = True) -> None:
        """Run one frame; without its picture where ``draw`` is False and the core allows it."""
        if self._movie is not None:
            self._movie.frame(self._mask)
        if draw or not self.skips_drawing:
            self._run()
        else:
            self._run_undrawn()

    def screen(self) -> np.ndarray:
        """The last picture, RGB uint8 ``(224, 320, 3)``; a buffer reused by the call after next."""
        self._turn ^= 1
        return self.core.screen_into(self._pictures[self._turn])

    def screen_into(self, out: np.ndarray) -> np.ndarray:
        """Write the last picture into ``out`` (uint8 ``(224, 320, 3)``, C-contiguous)."""
        return self.core.screen_into(out)

    def ram(self) -> np.ndarray:
        """The core's 64 KB of 68000 RAM, uint8, aliasing the core's memory.

        Its 16-bit words are byte-swapped: data.json address ``A`` is
        ``ram()[(A - 0xFF0000) ^ 1]``.
        """
        return self._ram

    def variables(self) -> dict[str, int]:
        """The integration's RAM variables, decoded as stable-retro's ``lookup_all()``."""
        decoder = self.decoder
        self._decode(self._ram, decoder.plan, decoder.digits, self._values)
        return dict(zip(decoder.names, self._values.tolist()))

    def window(self) -> tuple[int, int, int, int]:
        """The scenario's crop of the screen, ``(top, left, height, width)``, as stable-retro."""
        w, h = self.core.width, self.core.height
        x, y, cw, ch = self._crop
        x1 = w if (not cw or x + cw > w) else x + cw
        y1 = h if (not ch or y + ch > h) else y + ch
        return y, x, y1 - y, x1 - x

    def save_state(self) -> bytes:
        """The core's whole state (``retro_serialize``), as stable-retro's ``em.get_state()``."""
        return self.core.serialize()

    def load_state(self, state: bytes) -> None:
        """Go back to a state from :meth:`save_state` (of the same game).

        Raises:
            InvalidArgumentError: the core does not accept ``state``.
        """
        if not self.core.unserialize(state):
            raise InvalidArgumentError(
                f"Expected a save state of {self.game} from save_state(), got {len(state)} bytes "
                "that Genesis Plus GX does not accept"
            )

    def close(self) -> None:
        """Write the current episode's movie; unload the core's copy (the RAM view dies with it)."""
        if self._movie is not None:
            self._movie.close()
            self._movie = None
        self._ram = None
        self.core.close()
