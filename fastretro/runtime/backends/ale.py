"""ALE's Atari 2600 emulator behind the emulator seam: :class:`AleEmulator`.

stable-retro runs Atari 2600 games on its Stella libretro core; ale-py (the Arcade Learning
Environment) runs the same ROMs on its own Stella, about 3.6 times faster, and allows several
emulators in one process. :class:`AleEmulator` runs a stable-retro Atari2600 integration on
``ale_py.ALEInterface`` with the same meaning: stable-retro's buttons (through the game's
ALE action table, fastretro/runtime/backends/ale_games.py) and its RAM variables (decoded as
stable-retro does, fastretro/runtime/backends/ale_ram.py). Beyond the seam's core it has the
optional pictures the worker observes from (ALE's own gray, and colour codes with their gray
palette) and ALE's own end of game and lives.

ale-py is imported only when an emulator is created (it is the ``atari`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.backends.ale_games import (
    BUTTONS,
    AtariActions,
    action_set,
    ale_rom,
    ale_rom_path,
    ale_rom_shas,
    atari_data,
    fixed_reset,
    game_info,
    game_table,
    import_ale,
    mask_to_ale_table,
    minimal_actions,
)
from fastretro.runtime.backends.ale_palettes import gray_table, identify_palette
from fastretro.runtime.backends.ale_ram import RAM_SIZE, RamDecoder, decode_ram_into
from fastretro.runtime.backends.base import Emulator

# The Atari data that other modules import from here, where it was defined before
# ale_games.py and ale_ram.py split it off (fastretro/runtime/actions.py, games.py, envpool.py,
# tools/roms.py, tools/peers.py, integrations/envpool_compat.py, bench/bench_ale_worker.py).
__all__ = [
    "AleEmulator",
    "action_set",
    "ale_rom",
    "ale_rom_path",
    "ale_rom_shas",
    "atari_data",
    "decode_ram_into",
    "game_table",
    "minimal_actions",
]


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
        reuse_reset: bool | None = None,
    ) -> None:
        """Load ``game`` in a new ALE.

        Args:
            game: a stable-retro Atari2600 game ID in :func:`game_table`.
            seed: ALE's ``random_seed`` (its RNG serves sticky actions, which are off here).
            info: the RAM variables (``data.json``'s "info"); default: the integration's.
            rom_path: the ROM file; default: ale-py's ROM of ``game`` (hashing ale-py's ROMs
                once per process to find it).
            reuse_reset: :meth:`start` restores the state its first reset reached instead of
                resetting again; default: where that is the same (``fixed_reset(game)``, with
                ale-py's own ROM). True anywhere else changes the game.
        """
        ale_py = import_ale()
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
            raise InvalidArgumentError(f"Expected seed to be an int in [0, 2**31), got {seed!r}")
        self.game = game
        if reuse_reset is None:
            reuse_reset = rom_path is None and fixed_reset(game)
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
        self._reuse_reset = reuse_reset
        self._reset_state = None
        # The pictures of the reset's last frame: ALE keeps its screen out of its state, so a
        # restored reset shows them until the next frame (the worker observes a reset that
        # runs no frame after it).
        self._reset_pictures: dict[str, np.ndarray] | None = None
        self._show_reset = False
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
        # (tests/runtime/test_ale_backend.py checks every one).
        codes, gray = self.screen_codes(), self.screen_gray()
        name = identify_palette(codes, gray)
        return None if name is None else gray_table(name)

    def start(self) -> None:
        """Begin an episode with ALE's ``reset_game()``, nothing pressed.

        Unlike stable-retro, which loads the integration's ``Start.state`` (a snapshot its
        author saved once the game was under way), ALE resets the console, runs 60 frames with
        nothing pressed, holds RESET for 4 frames (twice: once more after selecting the game
        mode) and then plays the game's own starting actions, so the first frames and the RAM
        differ from stable-retro's start. With ``reuse_reset``, every start after the first
        restores the state the first reached (frame counts aside, the same state).
        """
        if self._reset_state is not None:
            # ~30 us instead of the reset's ~80 frames: 4.6 ms of the 5.5 ms a Breakout reset
            # took (bench/bench_overhead.py --game Breakout-Atari2600-v0 --configs
            # atari-envpool-v5 shows the workers' reset time).
            self._ale.restoreState(self._reset_state)
            self._show_reset = True
        else:
            self._ale.reset_game()
            if self._reuse_reset:
                self._reset_state = self._ale.cloneState()
                self._reset_pictures = {
                    "rgb": self._ale.getScreenRGB(),
                    "gray": self._ale.getScreenGrayscale(),
                    "codes": self._ale.getScreen(),
                }
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
        self._show_reset = False

    def screen(self) -> np.ndarray:
        """The last frame, RGB uint8 ``(H, W, 3)``; a buffer reused by the call after next."""
        return self._next("rgb", self._ale.getScreenRGB)

    def screen_into(self, out: np.ndarray) -> np.ndarray:
        """Write the last frame into ``out`` (uint8 ``(H, W, 3)``, C-contiguous); return it.

        For a caller that keeps two frames (max-pooling) or writes into shared memory.
        """
        return self._picture_into("rgb", self._ale.getScreenRGB, out)

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
        return self._picture_into(kind, grab, self._pictures[kind][turn])

    def _picture_into(self, kind: str, grab, out: np.ndarray) -> np.ndarray:
        # A restored reset shows the reset's pictures until the next frame (see start).
        if self._show_reset:
            np.copyto(out, self._reset_pictures[kind])
        else:
            grab(out)
        return out

    def screen_codes(self) -> np.ndarray:
        """The last frame as TIA colour codes, uint8 ``(H, W)``; reused by the call after next.

        ``gray_palette[screen_codes()]`` is :meth:`screen_gray`: the workers look the grays up
        while they resize (``kernels.palette_area_resize_into``) instead of asking ALE to map
        every pixel (fastretro/runtime/backends/ale_palettes.py says what that saves).
        """
        return self._next("codes", self._ale.getScreen)

    def screen_gray_into(self, out: np.ndarray) -> np.ndarray:
        """Write the last frame in ALE's gray into ``out`` (uint8 ``(H, W)``); return it."""
        return self._picture_into("gray", self._ale.getScreenGrayscale, out)

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
            self._show_reset = False
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
