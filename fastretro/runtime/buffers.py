"""The pool's shared memory as the parent holds it: one segment, its handshake, the obs views.

:mod:`fastretro.runtime.shm` makes and maps segments for anyone; :class:`PoolBuffers` is what
one pool puts in its segment (the arrays of :func:`~fastretro.runtime.protocol.segment_fields`,
sized from what the workers reported) and the parent's handles on it: the handshake that wakes
the workers, the compiled batch I/O that stages actions and reads results, and the read-only
views that are each ring slot's observations.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastretro.config import EnvConfig
from fastretro.runtime.preprocess import stack_views
from fastretro.runtime.protocol import WorkerReady, segment_fields
from fastretro.runtime.shm import Layout, SharedBuffers, cleanup_orphans

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolBuffers:
    """A pool's segment and the parent's handles on it. Make with :meth:`create`."""

    shared: SharedBuffers
    """The segment and its named arrays (``shared.arrays``; they alias the shared memory)."""
    handshake: Any
    """The wake-up protocol over the segment (``fastretro.runtime._ext.handshake``)."""
    io: Any
    """The compiled batch I/O: actions staged in, results read out."""
    obs_shape: tuple[int, ...]
    """One env's observation, ``(0,)`` without observations."""
    stack_views: list[np.ndarray]
    """Per ring slot, the read-only view of ``obs`` that is every env's observation."""

    @classmethod
    def create(
        cls,
        config: EnvConfig,
        ready: Sequence[WorkerReady],
        same_step: bool,
        action_width: int,
        info_width: int,
    ) -> PoolBuffers:
        """Create the segment of ``config``'s envs and initialise its handshake.

        Args:
            config: what every env is and does (its preprocessing and sequences size rows).
            ready: what each env's worker reported (one screen shape, checked), one per env.
            same_step: SAME_STEP autoreset (each env keeps a final observation).
            action_width: columns of a row of actions.
            info_width: RAM variables reported in infos.
        """
        from fastretro.runtime._ext.handshake import BatchIO, Handshake

        # Segments left by fastretro processes that were SIGKILLed (their owner is gone):
        # reclaimed here, as `fastretro cleanup` would.
        orphans = cleanup_orphans()
        if orphans:
            log.info("removed %d orphaned shared-memory segment(s): %s", len(orphans), orphans)
        screen_shape, state_size = ready[0].screen_shape, max(r.state_size for r in ready)
        prep = config.preprocessing
        if config.observe:
            obs_shape = prep.observation_shape(screen_shape)
            buffer_shape = prep.buffer_shape(screen_shape)
        else:
            obs_shape = buffer_shape = (0,)
        fields = segment_fields(
            len(ready),
            buffer_shape,
            obs_shape if same_step else (0,),
            action_width,
            info_width,
            state_size,
            ready[0].raw_screen if state_size and config.observe else (0,),
            config.sequence_length,
        )
        shared = SharedBuffers.create(Layout.build(fields))
        try:
            a = shared.arrays
            handshake = Handshake(a["sem"], a["counter"], a["queue"])
            handshake.init()
            io = BatchIO(
                a["actions"],
                a["cmd"],
                a["slot"],
                a["status"],
                a["rewards"],
                a["terminated"],
                a["truncated"],
            )
            if config.observe:
                channels = prep.frame_shape(screen_shape)[2]
                views = stack_views(a["obs"], prep.frame_stack, channels, prep.channels_first)
            else:
                views = [a["obs"]]
        except BaseException:
            shared.close()  # nobody else holds the segment yet
            raise
        for v in views:
            v.flags.writeable = False
        return cls(shared, handshake, io, obs_shape, views)
