"""``.bk2`` movies as stable-retro writes them, for emulators that are not stable-retro's.

stable-retro records a movie (``RetroEnv.auto_record``, its ``MovieBK2`` in src/movie-bk2.cpp)
as a zip of three files: ``Header.txt`` (the platform and the game), ``Input Log.txt`` (a line of
key names, then one line per frame of the keys held, starting with the episode's reset frame)
and ``Core.bin`` (the save state the episode started from). :class:`MovieWriter` writes the
same bytes for one player, so that stable-retro (and ``fastretro replay``/``render``) replays a
movie of the libretro backend as one of its own; ``tests/runtime/test_libretro.py`` checks
both the files and the replay.
"""

from __future__ import annotations

import os
import zipfile

#: stable-retro's one-letter name of each button in a movie line (its ``s_keyNames``) and the
#: name its key line gives it (``s_buttonNames``).
_KEYS = {
    "A": ("A", "A"),
    "B": ("B", "B"),
    "C": ("C", "C"),
    "X": ("X", "X"),
    "Y": ("Y", "Y"),
    "Z": ("Z", "Z"),
    "START": ("S", "Start"),
    "SELECT": ("s", "Select"),
    "MODE": ("M", "Mode"),
    "UP": ("U", "Up"),
    "DOWN": ("D", "Down"),
    "LEFT": ("L", "Left"),
    "RIGHT": ("R", "Right"),
    "L": ("l", "L"),
    "R": ("r", "R"),
}
#: stable-retro's platform names in a movie's header.
_PLATFORMS = {"Genesis": "GEN", "Snes": "SNES", "Nes": "NES", "Atari2600": "A26"}


class MovieWriter:
    """One episode's movie, written to ``path`` by :meth:`close`.

    Args:
        path: the ``.bk2`` file to write.
        game: the game's ID (the header's ``GameName``).
        system: stable-retro's system name (``"Genesis"``).
        buttons: the console's buttons in stable-retro's order (``None`` for an unused slot).
        state: the save state the episode starts from (``Core.bin``); ``None``: none.
    """

    def __init__(
        self,
        path: str,
        game: str,
        system: str,
        buttons: tuple[str | None, ...],
        state: bytes | None,
    ) -> None:
        self.path, self.game, self.system, self.state = path, game, system, state
        # stable-retro walks its button map in an unordered_map's order, which for its int keys
        # is the reverse of insertion: the last button first.
        self._keys = [(b, *_KEYS[name]) for b, name in enumerate(buttons) if name in _KEYS][::-1]
        self._lines = ["[Input]", "".join(f"P1 {long}|" for *_, long in self._keys)]
        self.frame(0)  # the reset frame, which RetroEnv logs once the movie is open

    def frame(self, mask: int) -> None:
        """Log one frame with the buttons of ``mask`` held (bit ``b``: ``buttons[b]``)."""
        held = "".join(key if mask >> b & 1 else "." for b, key, _ in self._keys)
        self._lines.append(f"|..|{held}|")

    def close(self) -> None:
        """Write the movie (a complete file, as stable-retro's is once it closes)."""
        header = (
            "MovieVersion Retro\nAuthor ?\nemuVersion ?\n"
            f"Platform {_PLATFORMS.get(self.system, self.system)}\nGameName {self.game}\n"
            "SHA1 ?\nCore ?\nrerecordCount 1\n"
        )
        tmp = self.path + ".part"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("Input Log.txt", "\n".join(self._lines) + "\n[/Input]")
            z.writestr("Header.txt", header)
            if self.state:
                z.writestr("Core.bin", self.state)
        os.replace(tmp, self.path)  # no half-written movie under the movie's name
