"""stable-retro's emulators behind the seam: every system stable-retro integrates.

One per process (stable-retro's rule). On Genesis Plus GX this backend also takes the two
shortcuts of fastretro/runtime/headless.py where the config allows them: frames whose picture
nobody uses run without drawing it, and the FM chip runs without its sound while its timers
are stopped. Movies (``.bk2``) are stable-retro's own, fed the buttons held on every frame.
"""

from __future__ import annotations

import os

import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime.backends.base import Emulator
from fastretro.runtime.games import GameSetup, integrations
from fastretro.runtime.headless import AUDIO_SCRATCH_VALUES, find_headless_frame, find_silent_fm


def make_retro_env(setup: GameSetup):
    """Create the one stable-retro env of this process (no window: ``render_mode=None``)."""
    import stable_retro

    kwargs = {"render_mode": None, "inttype": integrations()}
    if setup.scenario is not None:
        kwargs["scenario"] = setup.scenario
    if setup.state is not None and os.path.isfile(setup.state):
        env = stable_retro.RetroEnv(setup.game, stable_retro.State.NONE, **kwargs)
        env.load_state(os.path.abspath(setup.state))
        return env
    state = setup.state if setup.state is not None else stable_retro.State.DEFAULT
    return stable_retro.RetroEnv(setup.game, state, **kwargs)


class RetroEmulator(Emulator):
    """A ``stable_retro.RetroEnv``'s emulator (``em``) and game data, driven frame by frame.

    Args:
        setup: the env's game, state and scenario.
        record_dir: a folder for one ``.bk2`` per episode, or ``None``.
        skip_rendering: run undrawn frames without their picture where the core allows it.
        skip_audio: silence the Genesis FM chip while its timers are stopped, where the build
            allows it.
    """

    backend = "stable-retro"

    def __init__(
        self,
        setup: GameSetup,
        record_dir: str | None = None,
        skip_rendering: bool = True,
        skip_audio: bool = True,
    ) -> None:
        from fastretro.runtime._ext import worker_loop

        env = make_retro_env(setup)
        self.env, self.em, self.data = env, env.em, env.data
        self.game, self.buttons = setup.game, setup.buttons
        self.recording = record_dir is not None
        if self.recording:
            # One folder per env: stable-retro names movies GAME-STATE-NNNNNN.bk2 per episode.
            env.auto_record(record_dir)
        n = len(self.buttons)
        # One row of 0/1 per button mask: em.set_button_mask takes an array.
        self._rows = ((np.arange(1 << n)[:, None] >> np.arange(n)) & 1).astype(np.uint8)
        self._mask = 0
        self._set_mask, self._step = self.em.set_button_mask, self.em.step
        self.screen, self.variables = self.em.get_screen, self.data.lookup_all
        self.save_state = self.em.get_state
        headless = find_headless_frame() if skip_rendering else None
        self._undrawn = (
            worker_loop.UndrawnFrame(headless, AUDIO_SCRATCH_VALUES) if headless else None
        )
        self.skips_drawing = self._undrawn is not None
        silent_fm = find_silent_fm() if skip_audio else None
        if silent_fm is not None:
            worker_loop.install_silent_fm(silent_fm)
        self.skips_audio = silent_fm is not None
        if env._rotation_steps() != 0:
            self.rotate = env._apply_rotation

    def start(self) -> None:  # noqa: D102
        if self.recording and self.env.movie is not None:
            # RetroEnv.reset opens the next episode's movie; the finished one is closed here
            # so that its .bk2 is complete on disk as soon as the episode ends.
            self.env.movie.close()
            self.env.movie = None
        self.env.reset()
        self._mask = 0

    def press(self, mask: int) -> None:  # noqa: D102
        self._mask = mask
        self._set_mask(self._rows[mask], 0)

    def frame(self, draw: bool = True) -> None:  # noqa: D102
        if self.recording:
            # What RetroEnv.step does for its movie before each frame.
            movie = self.env.movie
            for b in range(len(self.buttons)):
                movie.set_key(b, bool((self._mask >> b) & 1), 0)
            movie.step()
        if draw or self._undrawn is None:
            self._step()
        else:
            self._undrawn()

    # screen, variables and save_state are the emulator's own bound methods.
    def screen(self) -> np.ndarray:  # noqa: D102
        return self.em.get_screen()

    def variables(self) -> dict[str, int]:  # noqa: D102
        return self.data.lookup_all()

    def save_state(self) -> bytes:  # noqa: D102
        return self.em.get_state()

    def load_state(self, state: bytes) -> None:
        """Go back to a state from :meth:`save_state` (of the same game).

        Raises:
            InvalidArgumentError: the core does not accept ``state`` (stable-retro's
                ``set_state`` returns False for it).
        """
        if not self.em.set_state(state):
            raise InvalidArgumentError(
                f"Expected a save state of {self.game} from save_state(), got {len(state)} bytes "
                "that stable-retro does not accept"
            )

    def window(self) -> tuple[int, int, int, int]:
        """The integration's crop of the screen, ``(top, left, height, width)``."""
        h, w = self.em.get_screen().shape[:2]
        x, y, cw, ch = self.data.crop_info(0)
        x1 = w if (not cw or x + cw > w) else x + cw
        y1 = h if (not ch or y + ch > h) else y + ch
        return y, x, y1 - y, x1 - x

    def scenario_update(self) -> tuple[float, bool]:
        """stable-retro's own evaluation (``update_ram``): Lua scenarios."""
        self.data.update_ram()
        return self.data.current_reward(), self.data.is_done()

    def close(self) -> None:  # noqa: D102
        self.env.stop_record()  # closes the current episode's movie: a complete file
        self.env.close()
        # The emulator is freed with its last reference: stable-retro allows one at a time.
        self.__dict__.clear()
