"""One env's worker work, in this process, with no pool around it: the reference of the overhead.

:class:`InProcessEnv` builds exactly what a worker builds for one env (its emulator, its action
table, its compiled ``EnvStepper`` and preprocessing over its rows of the segment's arrays) and
steps it directly: no other process, no handshake, no shared memory. Its rate is the limit of
the same work; ``fastretro bench`` reads it as L_same, and a pool's frames/s over L_same is how
good the pool is (its efficiency E).

It creates an emulator in the calling process, which stable-retro allows once per process: use
it in a process of its own (the bench does), never in a process that runs pools.
"""

from __future__ import annotations

import numpy as np

from fastretro.config import EnvConfig
from fastretro.runtime import actions
from fastretro.runtime.backends import choose_backend, make_emulator
from fastretro.runtime.games import resolve_all
from fastretro.runtime.protocol import Autoreset, segment_fields
from fastretro.runtime.shm import Layout
from fastretro.runtime.worker import make_stepper, observed_shape


class InProcessEnv:
    """One env of ``config``, stepped by its worker's own code in this process.

    Args:
        config: what the env is and does (its ``game``, ``state`` and ``scenario`` single).
        autoreset: the :class:`~fastretro.runtime.protocol.Autoreset` code.
        seed: the sticky-frame draws' seed.
    """

    def __init__(
        self, config: EnvConfig, autoreset: int = Autoreset.NEXT_STEP, seed: int = 0
    ) -> None:
        from fastretro.runtime._ext import worker_loop

        (setup,) = resolve_all(config, 1)
        backend, _ = choose_backend(config, [setup])
        self.emulator = emu = make_emulator(backend, setup, config, 0)
        table = actions.build_table(
            actions.choose(config.actions, setup.buttons, setup.game), emu.data, setup.buttons
        )
        self.action_width = len(table.sizes)
        prep = config.preprocessing
        screen = observed_shape(emu)
        obs_buffer = prep.buffer_shape(screen) if config.observe else (0,)
        final_obs = prep.observation_shape(screen) if autoreset == Autoreset.SAME_STEP else (0,)
        layout = Layout.build(
            segment_fields(
                1,
                obs_buffer,
                final_obs,
                self.action_width,
                len(setup.info_names),
                emu.state_capacity() if config.snapshot_best else 0,
                emu.screen().shape if config.snapshot_best and config.observe else (0,),
                config.sequence_length,
            )
        )
        # Plain memory in this process, laid out as the pool's shared segment.
        self.arrays = a = layout.views(bytearray(layout.size))
        self._depth = prep.frame_stack if config.observe else 1
        self._stepper = make_stepper(
            worker_loop, 0, config, emu, table, setup, autoreset, setup.info_names, a
        )
        self._stepper.set_rng(np.random.default_rng(seed))

    def reset(self) -> None:
        """Begin an episode (the results land in :attr:`arrays`, row 0)."""
        self._stepper.reset()

    def step(self, action: np.ndarray) -> tuple[float, bool, bool]:
        """One agent step with ``action`` (one row, as the pool's shared ``actions`` row).

        Returns:
            ``(reward, terminated, truncated)``; observations and infos are in :attr:`arrays`.
        """
        a = self.arrays
        a["actions"][0] = action
        a["slot"][0] = (a["slot"][0] + 1) % self._depth  # the ring advances, as in a pool
        self._stepper.step()
        return float(a["rewards"][0]), bool(a["terminated"][0]), bool(a["truncated"][0])

    def close(self) -> None:
        """Free the emulator (the stepper holds its methods: it goes first)."""
        self._stepper = None
        self.emulator.close()
        self.emulator = None
