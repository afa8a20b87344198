"""Frames run without drawing them, and the FM chip without its sound (runtime/headless.py).

Same game, no picture or FM sound, less time."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from conftest import GAME

from fastretro import VecRetroEnv
from fastretro.runtime import headless
from fastretro.runtime.headless import (
    AUDIO_SCRATCH_VALUES,
    GENESIS_CORE,
    YM2612_MODE_OFFSET,
    find_headless_frame,
    find_silent_fm,
)

CONTEST = dict(
    frameskip=4, sticky_prob=0.25, grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4
)


def _genesis_core_path() -> str:
    import os

    import stable_retro

    return os.path.join(os.path.dirname(stable_retro.__file__), "cores", GENESIS_CORE)


def _genesis_core_has_symbols() -> bool:
    # Read from disk, no emulator: a stripped build of the core cannot skip drawing, and the
    # pool then draws every frame; everywhere else these tests must pass.
    from elftools.elf.elffile import ELFFile

    with open(_genesis_core_path(), "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab") is not None


def _genesis_core_is_a_known_build() -> bool:
    return headless._file_sha256(_genesis_core_path()) in YM2612_MODE_OFFSET


needs_symbols = pytest.mark.skipif(
    not _genesis_core_has_symbols(),
    reason="this stable-retro build's Genesis core is stripped: frames cannot be left undrawn",
)
needs_known_build = pytest.mark.skipif(
    not (_genesis_core_has_symbols() and _genesis_core_is_a_known_build()),
    reason="this stable-retro build's Genesis core is not one whose YM2612 state layout "
    "fastretro knows (runtime/headless.py YM2612_MODE_OFFSET): its FM chip keeps its sound",
)


def _drawn_and_headless(frames: int):
    # Runs in a fresh process: the same buttons from the same state, frame by frame, once with
    # em.step and once with the headless frame; then one drawn frame after each.
    import ctypes

    import stable_retro

    env = stable_retro.make(GAME, render_mode=None)
    env.reset(seed=0)
    em = env.em
    headless = find_headless_frame()
    frame_gen = ctypes.CFUNCTYPE(None, ctypes.c_int)(headless.frame_gen)
    audio_update = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)(headless.audio_update)
    scratch = np.zeros(AUDIO_SCRATCH_VALUES, np.int16)
    masks = np.random.default_rng(0).integers(0, 2, (frames, 12), dtype=np.uint8)
    start = em.get_state()
    runs = {}
    for mode in ("drawn", "headless"):
        em.set_state(start)
        em.set_button_mask(np.zeros(12, np.uint8), 0)
        em.step()  # draws the start state's picture on both paths
        first = em.get_screen().copy()
        rams, screens, samples = [], [], []
        for m in masks:
            em.set_button_mask(m, 0)
            if mode == "drawn":
                em.step()
            else:
                frame_gen(1)
                samples.append(audio_update(scratch.ctypes.data))
            rams.append(env.get_ram().copy())
            screens.append(em.get_screen().copy())
        em.step()
        runs[mode] = (first, np.array(rams), np.array(screens), em.get_screen().copy(), samples)
    env.close()
    return runs


def test_no_core_in_this_process_means_no_headless_frame():
    # The test process never creates an emulator, so no Genesis core is mapped here.
    assert find_headless_frame() is None
    assert find_silent_fm() is None


def _pyelftools_symbols(data: bytes, wanted: dict[str, str]) -> dict:
    from elftools.elf.elffile import ELFFile

    table = ELFFile(io.BytesIO(data)).get_section_by_name(".symtab")
    return {
        sym.name: (sym["st_info"]["type"], sym["st_value"])
        for sym in table.iter_symbols()
        if wanted.get(sym.name) == sym["st_info"]["type"] and sym["st_value"]
    }


@needs_symbols
def test_the_symbol_reader_finds_what_pyelftools_finds():
    from elftools.elf.elffile import ELFFile

    with open(_genesis_core_path(), "rb") as f:
        data = f.read()
    table = ELFFile(io.BytesIO(data)).get_section_by_name(".symtab")
    every = [(s.name, s["st_info"]["type"]) for s in table.iter_symbols() if s.name]
    # Every name, each wanted as its own type or as the other one (found: no entry).
    flip = {"STT_FUNC": "STT_OBJECT", "STT_OBJECT": "STT_FUNC"}
    for wanted in (
        dict(every[::3]),
        {name: flip.get(kind, kind) for name, kind in every[1::3]},
        {**headless._SYMBOLS, **headless._FM_SYMBOLS},
    ):
        wanted = {n: k for n, k in wanted.items() if k in flip}
        assert headless.elf_symbols(io.BytesIO(data), wanted) == _pyelftools_symbols(data, wanted)


@needs_symbols
def test_the_symbol_reader_says_none_for_a_stripped_core_and_raises_for_other_files():
    with open(_genesis_core_path(), "rb") as f:
        data = f.read()
    # The same file with its ".symtab" section renamed: a stripped build's table is gone.
    assert data.count(b"\0.symtab\0") == 1
    stripped = data.replace(b"\0.symtab\0", b"\0.notsym\0")
    assert headless.elf_symbols(io.BytesIO(stripped), {"retro_run": "STT_FUNC"}) is None
    with pytest.raises(ValueError, match="not an ELF file"):
        headless.elf_symbols(io.BytesIO(b"#!/bin/sh\n" * 10), {"retro_run": "STT_FUNC"})
    with pytest.raises(ValueError, match="outside the file"):
        headless.elf_symbols(io.BytesIO(data[:4096]), {"retro_run": "STT_FUNC"})


@needs_symbols
def test_reading_the_core_in_the_pool_leaves_its_forked_workers_nothing_to_read():
    path = os.path.realpath(_genesis_core_path())
    headless.read_core(_genesis_core_path())
    ctx = mp.get_context("fork")
    with ProcessPoolExecutor(1, mp_context=ctx) as ex:
        hits = ex.submit(_cached_reads, path).result(timeout=60)
    assert hits == (1, 1)


def _cached_reads(path: str) -> tuple[int, int]:
    # In the forked child: the lookups a worker makes, answered from the inherited caches.
    before = (headless._file_sha256.cache_info().hits, headless._core_symbols.cache_info().hits)
    headless._file_sha256(path)
    headless._core_symbols(path)
    after = (headless._file_sha256.cache_info().hits, headless._core_symbols.cache_info().hits)
    return (after[0] - before[0], after[1] - before[1])


@needs_symbols
def test_a_headless_frame_is_the_same_frame_without_its_picture():
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        runs = ex.submit(_drawn_and_headless, 240).result(timeout=300)
    first, rams, screens, after, _ = runs["drawn"]
    h_first, h_rams, h_screens, h_after, samples = runs["headless"]
    np.testing.assert_array_equal(first, h_first)
    assert not (rams == rams[0]).all(), "the game should move, or equal RAM proves nothing"
    np.testing.assert_array_equal(h_rams, rams)  # the game itself is untouched
    assert not (screens == first).all(), "drawn frames should change the picture"
    assert (h_screens == h_first).all(), "headless frames must not draw"
    assert min(samples) > 0, "the sound chips should advance every frame"
    np.testing.assert_array_equal(h_after, after)  # drawing resumes exactly


def _rollout(n_steps, skip_rendering, skip_audio=False, **kwargs):
    acts = np.random.default_rng(2).integers(0, 2, (n_steps, 2, 12), dtype=np.uint8)
    with VecRetroEnv(
        GAME, 2, seed=4, skip_rendering=skip_rendering, skip_audio=skip_audio, **kwargs
    ) as env:
        skips = env.skips_rendering + env.skips_audio
        obs, infos = env.reset()
        observations, rewards, ends, lives = [obs.copy()], [], [], []
        for a in acts:
            obs, rew, term, trunc, infos = env.step(a)
            observations.append(obs.copy())
            rewards.append(rew.copy())
            ends.append(term | trunc)
            lives.append(infos["lives"].copy())
    return skips, np.array(observations), np.array(rewards), np.array(ends), np.array(lives)


@needs_symbols
@pytest.mark.parametrize(
    "kwargs",
    [CONTEST, dict(frameskip=4, sticky_prob=0.25), dict(frameskip=4, observe=False)],
    ids=["contest", "rgb-fs4-sticky", "no-observations"],
)
def test_skipping_rendering_changes_no_observation_reward_or_info(kwargs):
    # 400 steps of 4 frames reach episode ends (autoreset) on Airstriker with random buttons.
    drawn = _rollout(400, False, max_episode_steps=150, **kwargs)
    skipped = _rollout(400, True, max_episode_steps=150, **kwargs)
    assert drawn[0] == (False,) * 4 and skipped[0] == (True, True, False, False)
    assert drawn[2].sum() > 0 and drawn[3].any(), "the rollout should score and end episodes"
    for got, want in zip(skipped[1:], drawn[1:]):
        np.testing.assert_array_equal(got, want)


@needs_symbols
def test_an_episode_ending_on_an_undrawn_frame_shows_that_frame():
    # Evaluated per frame, an episode can end on a frame that was not drawn; the worker then
    # runs that frame again, drawn, from the state before it. These seeds end 6 episodes by
    # game over in 1,500 steps, 2 of them on an undrawn frame (without the redraw, exactly
    # those 2 final observations differ).
    kwargs = dict(CONTEST, per_frame_reward=True)
    drawn = _rollout(1500, False, **kwargs)
    skipped = _rollout(1500, True, **kwargs)
    assert drawn[3].sum() >= 2, "the rollout should end episodes by game over"
    for got, want in zip(skipped[1:], drawn[1:]):
        np.testing.assert_array_equal(got, want)


def _timers_on_and_off(frames: int):
    # Runs in a fresh process. The same buttons from the same state, three times: the real core
    # with the YM2612's timers running (its mode register set by hand: load and flag both
    # timers; Airstriker itself never starts them), the silent FM with the timers running, and
    # the silent FM as the game leaves the chip (timers stopped). Returns what a game can see of
    # the chip (the status register) and the RAM, frame by frame, and the silent FM's calls.
    import ctypes

    import stable_retro

    from fastretro.runtime._ext import worker_loop

    env = stable_retro.make(GAME, render_mode=None)
    env.reset(seed=0)
    em = env.em
    silent = find_silent_fm()
    mode = ctypes.c_int.from_address(silent.mode)
    status = ctypes.c_uint8.from_address(silent.mode - 2)  # YM2612Read's byte, in this build
    masks = np.random.default_rng(1).integers(0, 2, (frames, 12), dtype=np.uint8)
    start = em.get_state()

    def play(timers: bool):
        em.set_state(start)
        if timers:
            mode.value = 0x0F
        statuses, rams = [], []
        for m in masks:
            em.set_button_mask(m, 0)
            em.step()
            statuses.append(status.value)
            rams.append(env.get_ram().copy())
        return np.array(statuses), np.array(rams)

    runs = {"real, timers": play(True)}
    worker_loop.install_silent_fm(silent)
    slot = ctypes.c_void_p.from_address(silent.slot)
    installed = slot.value not in (None, silent.update)
    before = worker_loop.silent_fm_calls()
    runs["silent, timers"] = play(True)
    timed = worker_loop.silent_fm_calls()
    runs["silent, stopped"] = play(False)
    stopped = worker_loop.silent_fm_calls()
    env.reset()  # resets and state loads keep the switch
    em.set_state(start)
    kept = slot.value not in (None, silent.update)
    unknown = YM2612_MODE_OFFSET.copy()
    YM2612_MODE_OFFSET.clear()  # an unknown build
    headless._file_sha256.cache_clear()
    refused = find_silent_fm() is None
    YM2612_MODE_OFFSET.update(unknown)
    env.close()
    calls = {
        "timers": (timed[0] - before[0], timed[1] - before[1]),
        "stopped": (stopped[0] - timed[0], stopped[1] - timed[1]),
    }
    return runs, calls, installed, kept, refused


@needs_known_build
def test_the_silent_fm_chip_keeps_its_timers_exactly():
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as ex:
        runs, calls, installed, kept, refused = ex.submit(_timers_on_and_off, 300).result(
            timeout=300
        )
    assert installed and kept, "the core's YM_Update should point at the silent FM"
    real_status, real_ram = runs["real, timers"]
    assert real_status.any(), "running timers should raise status flags, or this proves nothing"
    assert not (real_ram == real_ram[0]).all(), "the game should move"
    status, ram = runs["silent, timers"]
    np.testing.assert_array_equal(status, real_status)
    np.testing.assert_array_equal(ram, real_ram)
    silenced, forwarded = calls["timers"]
    assert forwarded > 0 and silenced == 0, "running timers need the real chip on every call"
    status, _ = runs["silent, stopped"]
    silenced, forwarded = calls["stopped"]
    assert silenced > 0 and forwarded == 0 and not status.any()
    assert refused, "an unknown build of the core must keep its sound"


@needs_known_build
def test_skipping_audio_changes_no_observation_reward_or_info():
    kwargs = dict(CONTEST, max_episode_steps=150)
    full = _rollout(400, False, skip_audio=False, **kwargs)
    silent = _rollout(400, False, skip_audio=True, **kwargs)
    assert full[0] == (False,) * 4 and silent[0] == (False, False, True, True)
    assert full[2].sum() > 0 and full[3].any(), "the rollout should score and end episodes"
    for got, want in zip(silent[1:], full[1:]):
        np.testing.assert_array_equal(got, want)
