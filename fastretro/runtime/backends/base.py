"""The emulator seam: the few operations a worker needs from one emulator.

A worker process owns one or more :class:`Emulator` objects (stable-retro allows one per
process; ALE allows several) and drives them from its compiled loop (ext/worker_loop.pyx):
start an episode, hold buttons, run frames (drawing only the ones whose picture is used), read
the picture and the game's RAM variables, save and load states. Everything above this seam
(frame timing, sticky actions, action sets, scenarios, preprocessing, shared memory) is the
same whichever emulator runs the game.

Beyond those operations the seam declares, with a default, every capability that only some
emulators have and that the worker (fastretro/runtime/worker.py and its compiled loop) asks
about: an optional method is ``None`` where an emulator lacks it, as :attr:`Emulator.rotate`
is, so the worker tests ``emu.screen_gray is not None`` instead of asking for a name.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence

import numpy as np

from fastretro.errors import InvalidArgumentError


class Emulator(abc.ABC):
    """One game's emulator inside a worker process.

    Attributes:
        backend: the backend's name, as ``VecRetroEnv.backends`` reports it.
        buttons: the console's button names (stable-retro's order); bit ``b`` of a button mask
            is ``buttons[b]``.
        data: the game's integration data as stable-retro's ``GameData`` gives it to action
            sets: ``filter_action(mask)`` (drop impossible combinations such as UP+DOWN) and
            ``valid_actions()`` (the button combos per group).
        skips_drawing: whether :meth:`frame` with ``draw=False`` saves work (else it draws).
            Default False.
        skips_audio: whether the emulator runs without the sound nobody hears (stable-retro's
            Genesis FM chip; ``VecRetroEnv.skips_audio``). Default False.
        rotate: a function turning the windowed screen upright, for integrations that rotate
            it. Default ``None``: upright already.
        screen_gray: ``screen_gray() -> uint8 (H, W)``, the last picture in the emulator's own
            gray (the luma of :meth:`screen`, a third of its bytes), with :meth:`screen`'s
            buffer rule. Default ``None``: the worker converts RGB itself.
        screen_into: ``screen_into(out) -> out``, :meth:`screen` written into ``out`` (uint8
            ``(H, W, 3)``, C-contiguous), for a worker that writes an unprocessed RGB
            observation straight into shared memory. Default ``None``: it copies :meth:`screen`.
        screen_codes: ``screen_codes() -> uint8 (H, W)``, the last picture as colour codes,
            with :meth:`screen`'s buffer rule; ``gray_palette[screen_codes()]`` is the gray
            picture. Default ``None``.
        gray_palette: uint8 ``(256,)``, the gray of each colour code, where the emulator has
            :attr:`screen_codes` and knows its palette. Default ``None``: gray observations come
            from :attr:`screen_gray` or RGB.
        game_over: ``game_over() -> bool``, the emulator's own end of game, after which it runs
            no frame until :meth:`start` (the worker ends the episode there). Default ``None``:
            only the scenario ends episodes.
        lives: ``lives() -> int``, the emulator's own count of the player's lives (for
            ``episodic_life``). Default ``None``: the game's ``lives`` RAM variable.
    """

    backend: str
    buttons: tuple[str, ...]
    data: object
    skips_drawing: bool = False
    skips_audio: bool = False
    rotate: Callable[[np.ndarray], np.ndarray] | None = None
    screen_gray: Callable[[], np.ndarray] | None = None
    screen_codes: Callable[[], np.ndarray] | None = None
    screen_into: Callable[[np.ndarray], np.ndarray] | None = None
    gray_palette: np.ndarray | None = None
    game_over: Callable[[], bool] | None = None
    lives: Callable[[], int] | None = None

    @abc.abstractmethod
    def start(self) -> None:
        """Begin an episode: the level's start state, nothing pressed."""

    @abc.abstractmethod
    def press(self, mask: int) -> None:
        """Hold the buttons of ``mask`` (bit ``b``: ``buttons[b]``) from the next frame on."""

    @abc.abstractmethod
    def frame(self, draw: bool = True) -> None:
        """Run one frame; ``draw=False`` where nobody will look at its picture."""

    @abc.abstractmethod
    def screen(self) -> np.ndarray:
        """The last drawn picture: RGB uint8 ``(H, W, 3)``.

        A new array, or a buffer the emulator does not write again before the call after the
        next: the worker keeps one picture while it takes another (max-pooling).
        """

    def window(self) -> tuple[int, int, int, int]:
        """The part of :meth:`screen` the game shows, ``(top, left, height, width)``."""
        h, w = self.screen().shape[:2]
        return 0, 0, h, w

    @abc.abstractmethod
    def variables(self) -> dict[str, int]:
        """The integration's RAM variables (``data.json``'s "info") as they are now."""

    @abc.abstractmethod
    def save_state(self) -> bytes:
        """The emulator's whole state."""

    @abc.abstractmethod
    def load_state(self, state: bytes) -> None:
        """Go back to a state from :meth:`save_state` (the next frame shows its picture).

        Raises:
            InvalidArgumentError: the emulator does not accept ``state``.
        """

    def state_capacity(self) -> int:
        """Bytes to reserve for any save state of this game (the snapshot slots)."""
        return len(self.save_state())

    def scenario_update(self) -> tuple[float, bool]:
        """Evaluate the scenario with the emulator's own engine: ``(reward, done)``.

        Only for backends that have one (stable-retro's, for Lua scenarios); the worker
        evaluates declarative scenarios itself from :meth:`variables`.
        """
        raise NotImplementedError(f"the {self.backend} backend has no scenario engine")

    def close(self) -> None:  # noqa: B027 - most emulators need nothing
        """Free what the emulator holds."""


class ConsoleActions:
    """What stable-retro's ``GameData`` tells action sets about a console, without a GameData.

    The ``data`` of an emulator that runs without stable-retro's own (ALE, libretro):
    ``filter_action`` and ``valid_actions`` as stable-retro computes them from the console's
    button groups (``cores/*.json``'s "actions", src/data.cpp ``setActions`` and
    ``filterAction``). Each group is keyed by the mask of all its buttons and holds the set of
    its combos' masks, in the order of those keys; in each group at most one combo stays
    pressed, and a mask that presses two of a group's combos (UP with DOWN) keeps neither;
    buttons in no group are dropped.

    Args:
        system: stable-retro's system name, e.g. ``"Genesis"``.
        buttons: the console's button names (bit ``b`` of a mask is ``buttons[b]``).
    """

    def __init__(self, system: str, buttons: Sequence[str]) -> None:
        import stable_retro

        index = {b: i for i, b in enumerate(buttons) if b}
        groups: dict[int, list[int]] = {}
        for group in stable_retro.get_system_info(system)["actions"]:
            combos = set()
            for combo in group:
                unknown = [b for b in combo if b not in index]
                if unknown:
                    raise InvalidArgumentError(
                        f"Unknown {system} button(s) {unknown}: expected names in {list(index)}"
                    )
                combos.add(sum(1 << index[b] for b in set(combo)))
            key = 0
            for combo in combos:
                key |= combo
            # std::map::emplace keeps the first group of a key.
            groups.setdefault(key, sorted(combos))
        self._groups = [groups[key] for key in sorted(groups)]

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
