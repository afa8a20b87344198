"""The emulator seam: every capability the worker uses is declared, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fastretro import VecRetroEnv
from fastretro.runtime.backends.ale import AleEmulator
from fastretro.runtime.backends.base import Emulator
from fastretro.runtime.backends.retro import RetroEmulator
from fastretro.runtime.worker import observation_picture, observed_shape, picture_name

ROOT = Path(__file__).resolve().parents[2]
# Each capability that only some emulators have, and its default on the seam.
OPTIONAL = {
    "skips_drawing": False,
    "skips_audio": False,
    "rotate": None,
    "screen_gray": None,
    "screen_codes": None,
    "gray_palette": None,
    "game_over": None,
    "lives": None,
}


class Bare(Emulator):
    """An emulator with the seam's required operations only: a 4 x 6 picture."""

    backend = "bare"
    buttons = ("A",)
    data = None

    def __init__(self) -> None:
        self.picture = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)

    def start(self) -> None:
        pass

    def press(self, mask: int) -> None:
        pass

    def frame(self, draw: bool = True) -> None:
        pass

    def screen(self) -> np.ndarray:
        return self.picture

    def variables(self) -> dict[str, int]:
        return {}

    def save_state(self) -> bytes:
        return b""

    def load_state(self, state: bytes) -> None:
        pass


def used_names() -> set[str]:
    """The emulator attributes the worker and its compiled loop read."""
    worker = (ROOT / "fastretro/runtime/worker.py").read_text()
    loop = (ROOT / "ext/worker_loop.pyx").read_text()
    names = set(re.findall(r"\bemu\.(\w+)", worker))
    names |= set(re.findall(r"\bemulator\.(\w+)", loop))
    names |= set(re.findall(r"getattr\(emulator, \"(\w+)\"", loop))
    return names


def test_the_seam_declares_every_name_the_worker_reads():
    names = used_names()
    assert {"screen_gray", "gray_palette", "skips_audio", "game_over", "lives"} <= names
    declared = set(dir(Emulator)) | set(Emulator.__annotations__)
    assert names - declared == set()


def test_a_bare_emulator_has_every_optional_capabilitys_default():
    em = Bare()
    for name, default in OPTIONAL.items():
        assert getattr(em, name) is default, name
    assert em.window() == (0, 0, 4, 6)
    assert em.state_capacity() == 0
    with pytest.raises(NotImplementedError, match="the bare backend has no scenario engine"):
        em.scenario_update()


def test_a_bare_emulators_observations_come_from_rgb():
    em = Bare()
    assert observation_picture(em, grayscale=True) == (em.screen, None)
    assert observation_picture(em, grayscale=False) == (em.screen, None)
    assert observed_shape(em) == (4, 6, 3)


def test_gray_observations_take_the_emulators_own_gray_then_its_codes():
    em = Bare()
    em.screen_gray = lambda: em.picture[..., 0]
    assert observation_picture(em, grayscale=True) == (em.screen_gray, None)
    em.screen_codes = lambda: em.picture[..., 1]
    assert observation_picture(em, grayscale=True) == (em.screen_gray, None)  # no palette
    em.gray_palette = np.arange(256, dtype=np.uint8)
    picture, palette = observation_picture(em, grayscale=True)
    assert picture == em.screen_codes and palette is em.gray_palette
    assert observation_picture(em, grayscale=False) == (em.screen, None)


def test_the_pool_names_the_picture_by_the_seams_name_whatever_the_method_is_called():
    # stable-retro's emulator hands over its get_screen as its screen.
    with VecRetroEnv("Airstriker-Genesis-v0", 1, backend="stable-retro", grayscale=True) as env:
        assert env.observes_from == ("screen",)
    em = Bare()
    em.screen_gray = lambda: em.picture[..., 0]
    assert picture_name(em, em.screen_gray) == "screen_gray"
    assert picture_name(em, em.screen) == "screen"


def test_a_rotating_emulator_shows_its_rotated_shape():
    em = Bare()
    em.rotate = np.rot90
    assert observed_shape(em) == (6, 4, 3)


def test_each_backend_declares_what_it_has():
    # Class attributes: neither emulator is created (no ROM, no ale-py needed).
    for name in ("screen_gray", "screen_codes", "game_over", "lives"):
        assert callable(getattr(AleEmulator, name)), name
        assert getattr(RetroEmulator, name) is None, name
    assert AleEmulator.skips_drawing is False and AleEmulator.skips_audio is False
    assert AleEmulator.backend == "ale" and RetroEmulator.backend == "stable-retro"
