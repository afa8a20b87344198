"""Frames run without drawing them (fastretro/headless.py): same game, no picture, less time."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from conftest import GAME

from fastretro import VecRetroEnv
from fastretro.headless import AUDIO_SCRATCH_VALUES, GENESIS_CORE, find_headless_frame

CONTEST = dict(
    frameskip=4, sticky_prob=0.25, grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4
)


def _genesis_core_has_symbols() -> bool:
    # Read from disk, no emulator: a stripped build of the core cannot skip drawing, and the
    # pool then draws every frame; everywhere else these tests must pass.
    import os

    import stable_retro
    from elftools.elf.elffile import ELFFile

    path = os.path.join(os.path.dirname(stable_retro.__file__), "cores", GENESIS_CORE)
    with open(path, "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab") is not None


needs_symbols = pytest.mark.skipif(
    not _genesis_core_has_symbols(),
    reason="this stable-retro build's Genesis core is stripped: frames cannot be left undrawn",
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


def _rollout(n_steps, skip_rendering, **kwargs):
    acts = np.random.default_rng(2).integers(0, 2, (n_steps, 2, 12), dtype=np.uint8)
    with VecRetroEnv(GAME, 2, seed=4, skip_rendering=skip_rendering, **kwargs) as env:
        skips = env.skips_rendering
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
    assert drawn[0] == (False, False) and skipped[0] == (True, True)
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
