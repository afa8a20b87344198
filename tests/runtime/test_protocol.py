"""The protocol is defined once (fastretro/runtime/protocol.py): both compiled modules act on it."""

from __future__ import annotations

import pickle

import pytest

from fastretro.runtime import actions, protocol, stats
from fastretro.runtime._ext import handshake, worker_loop


@pytest.mark.parametrize("module", [worker_loop, handshake], ids=["worker_loop", "handshake"])
def test_the_compiled_modules_act_on_the_protocol_modules_codes(module):
    # Every code a compiled module compares against or writes, as it read them at import.
    codes = module.protocol_codes()
    for enum_name, values in codes.items():
        enum = getattr(protocol, enum_name)
        for name, value in values.items():
            assert value == enum[name], f"{enum_name}.{name}: compiled {value}, Python {enum[name]}"
    if module is worker_loop:
        assert worker_loop.reset_next_episode_code() == protocol.RESET_NEXT_EPISODE
        assert set(codes["Command"]) == {c.name for c in protocol.Command}
        assert set(codes["Timing"]) == {t.name for t in protocol.Timing}


def test_the_handshake_and_the_stats_use_the_protocols_sizes():
    assert handshake.SEM_STRIDE == protocol.SEM_STRIDE
    assert stats.TIMING_WIDTH == protocol.TIMING_WIDTH == len(protocol.Timing)
    assert (actions.MODE_BITS, actions.MODE_INDEX, actions.MODE_GROUPS) == tuple(
        protocol.ActionMode
    )


def test_the_ready_message_is_a_named_structure_that_survives_the_pipe():
    ready = protocol.WorkerReady(
        screen_shape=(224, 320, 3),
        action_mode=protocol.ActionMode.BITS,
        action_sizes=(2,) * 12,
        state_size=0,
        raw_screen=(224, 320, 3),
        skips_rendering=True,
        skips_audio=True,
        backend="stable-retro",
        observes_from="screen",
    )
    back = pickle.loads(pickle.dumps(ready))
    assert back == ready and back.backend == "stable-retro" and back._fields[0] == "screen_shape"
