"""Preprocessing in the worker: spaces, equality with OpenCV on plain stable-retro frames, the
frame-stack ring, reward transforms, observe=False, the numba cache, and every bad option."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import gymnasium
import naive
import numpy as np
import pytest
from conftest import DATA, GAME
from reference import plain_rollout

from fastretro import InvalidArgumentError, VecRetroEnv

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is a test extra")


def buttons(steps, num_envs, seed=0):
    return np.random.default_rng(seed).integers(0, 2, (steps, num_envs, 12), dtype=np.uint8)


def opencv_frame(rgb, crop=(0, 0, 0, 0), size=(84, 84)):
    """The usual Python-wrapper preprocessing (WarpFrame), done with OpenCV."""
    rgb = np.ascontiguousarray(naive.crop(rgb, *crop))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, size[::-1], interpolation=cv2.INTER_AREA)[..., None]


@pytest.mark.parametrize(
    ("options", "shape"),
    [
        ({}, (224, 320, 3)),
        ({"grayscale": True}, (224, 320, 1)),
        ({"resize": (84, 84)}, (84, 84, 3)),
        ({"grayscale": True, "resize": (84, 84), "frame_stack": 4}, (84, 84, 4)),
        ({"crop": (10, 20, 30, 40)}, (194, 250, 3)),
        ({"resize": (50, 60), "frame_stack": 2}, (50, 60, 6)),
    ],
)
def test_observation_space_reflects_the_options(options, shape):
    with VecRetroEnv(GAME, 2, **options) as env:
        assert env.single_observation_space == gymnasium.spaces.Box(0, 255, shape, np.uint8)
        assert env.observation_space.shape == (2, *shape)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (2, *shape) and env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
        assert obs.shape == (2, *shape)


def test_observations_equal_opencv_on_plain_stable_retro_frames():
    # The contest's preprocessing (no sticky randomness): 4 frames per step, max-pool, gray,
    # 84x84, stack 4, against OpenCV applied to a plain stable-retro env's max-pooled frames.
    steps, crop = 40, (8, 0, 0, 16)
    acts = buttons(steps, 1, seed=3)
    raw, _, _ = plain_rollout(GAME, acts[:, 0], frameskip=4, max_pool=True)
    stack = naive.FrameStack(4)
    expected = [stack.reset(opencv_frame(raw[0], crop))]
    expected += [stack.push(opencv_frame(f, crop)) for f in raw[1:]]
    got = []
    with VecRetroEnv(
        GAME,
        1,
        frameskip=4,
        max_pool=True,
        grayscale=True,
        resize=(84, 84),
        crop=crop,
        frame_stack=4,
    ) as env:
        obs, _ = env.reset()
        got.append(obs[0].copy())
        for a in acts:
            obs, *_ = env.step(a)
            got.append(obs[0].copy())
    assert len(got) == len(expected)
    for t, (g, e) in enumerate(zip(got, expected)):
        assert np.abs(g.astype(int) - e).max() <= 1, f"step {t}"


def test_rgb_resize_and_gray_alone_match_opencv():
    acts = buttons(10, 1, seed=4)
    raw, _, _ = plain_rollout(GAME, acts[:, 0])
    with (
        VecRetroEnv(GAME, 1, resize=(100, 160)) as rgb_env,
        VecRetroEnv(GAME, 1, grayscale=True) as gray_env,
    ):
        rgb_env.reset()
        gray_env.reset()
        for a, frame in zip(acts, raw[1:]):
            rgb, *_ = rgb_env.step(a)
            gray, *_ = gray_env.step(a)
            ref = cv2.resize(frame, (160, 100), interpolation=cv2.INTER_AREA)
            assert np.abs(rgb[0].astype(int) - ref).max() <= 1
            np.testing.assert_array_equal(gray[0, ..., 0], cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))


def test_frame_stack_is_newest_last_and_reset_fills_it():
    with VecRetroEnv(GAME, 2, grayscale=True, resize=(42, 42), frame_stack=3) as env:
        obs, _ = env.reset(seed=0)
        first = obs.copy()
        for k in range(1, 3):
            np.testing.assert_array_equal(first[..., k], first[..., 0])
        previous = first
        for a in buttons(12, 2, seed=5):
            obs, *_ = env.step(a)
            # The stack shifts by one frame per step: what was newest is now second newest.
            np.testing.assert_array_equal(obs[..., :-1], previous[..., 1:])
            previous = obs.copy()
        obs, _ = env.reset(seed=0)
        np.testing.assert_array_equal(obs, first)


def test_frame_stack_restarts_on_autoreset_and_final_obs_holds_the_last_stack():
    opts = {"grayscale": True, "resize": (42, 42), "frame_stack": 4, "max_episode_steps": 3}
    with (
        VecRetroEnv(GAME, 1, autoreset_mode="same_step", **opts) as same,
        VecRetroEnv(GAME, 1, autoreset_mode="next_step", **opts) as nxt,
    ):
        first, _ = same.reset()
        first = first.copy()
        nxt.reset()
        acts = buttons(4, 1, seed=6)
        for t, a in enumerate(acts):
            obs_same, _, _, trunc, infos = same.step(a)
            obs_next, *_ = nxt.step(a)
            if t < 2:
                np.testing.assert_array_equal(obs_same, obs_next)
            if t == 1:
                stack_before_end = obs_next.copy()
            if t == 2:
                assert trunc[0]
                # SAME_STEP: the final stack is in the infos, the returned obs is the reset's.
                final = infos["final_obs"][0]
                assert final.shape == (42, 42, 4)
                np.testing.assert_array_equal(final[..., :-1], stack_before_end[0, ..., 1:])
                np.testing.assert_array_equal(final, obs_next[0])
                np.testing.assert_array_equal(obs_same, first)
            if t == 3:
                # NEXT_STEP: the step after the end resets and fills the stack.
                np.testing.assert_array_equal(obs_next, first)


def test_reward_scale_clip_and_backtracking_in_the_worker():
    scenario = os.path.join(DATA, "zigzag.json")  # +1, +1, -2, +1, +1, -2, ... per frame
    acts = np.zeros((9, 1, 12), np.uint8)

    def rewards(**opts):
        with VecRetroEnv(GAME, 1, scenario=scenario, **opts) as env:
            env.reset()
            return np.array([env.step(a)[1][0] for a in acts])

    raw = rewards()
    assert sorted(set(raw)) == [-2, 1]  # the script also runs once during reset: phase varies
    np.testing.assert_array_equal(rewards(reward_scale=0.5), raw * 0.5)
    np.testing.assert_array_equal(
        rewards(reward_scale=3.0, clip_reward=2.0), np.clip(raw * 3, -2, 2)
    )
    # retro-baselines' AllowBacktracking on the raw sequence, then the scale.
    x = best = 0.0
    expected = []
    for r in raw:
        x += r
        expected.append(max(0.0, x - best))
        best = max(best, x)
    np.testing.assert_array_equal(
        rewards(allow_backtracking=True, reward_scale=0.01), np.array(expected) * 0.01
    )
    # Backtracking rewards add up to the best cumulative reward reached.
    assert sum(expected) == np.cumsum(raw).max() > 0


def test_observe_false_produces_no_frames_and_the_same_rewards():
    acts = buttons(30, 2, seed=7)
    with VecRetroEnv(GAME, 2, observe=False) as blind, VecRetroEnv(GAME, 2) as seeing:
        assert blind.single_observation_space.shape == (0,)
        obs, _ = blind.reset(seed=1)
        seeing.reset(seed=1)
        assert obs.shape == (2, 0)
        for a in acts:
            obs, r1, *_, i1 = blind.step(a)
            _, r2, *_, i2 = seeing.step(a)
            assert obs.shape == (2, 0)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(i1["score"], i2["score"])


def test_workers_load_compiled_kernels_from_numba_cache(tmp_path):
    # The pool compiles once in the parent; a fresh process (as a worker is) then finds every
    # kernel it needs in numba's cache and compiles nothing.
    with VecRetroEnv(
        GAME, 1, grayscale=True, resize=(84, 84), frame_stack=4, max_pool=True, frameskip=2
    ):
        pass
    code = """
import json, numpy as np
from fastretro.runtime import kernels
from fastretro.runtime.preprocess import FrameWriter, Preprocessing
prep = Preprocessing(grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4)
row = np.zeros((1, *prep.buffer_shape((224, 320, 3))), np.uint8)[0]
writer = FrameWriter(prep, (224, 320, 3), (0, 0, 224, 320), None, row, np.zeros(1, np.int32))
writer.warm_up(np.zeros((224, 320, 3), np.uint8))
s = kernels.gray_area_resize_into.stats
print(json.dumps([sum(s.cache_hits.values()), sum(s.cache_misses.values())]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    hits, misses = json.loads(out.stdout.strip().splitlines()[-1])
    assert misses == 0 and hits >= 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resize": (84,)}, "Expected resize to be (height, width) with both >= 1, got (84,)"),
        ({"resize": (0, 84)}, "Expected resize to be (height, width) with both >= 1, got (0, 84)"),
        (
            {"resize": (84.0, 84)},
            "Expected resize to be (height, width) with both >= 1, got (84.0, 84)",
        ),
        (
            {"crop": (1, 2, 3)},
            "Expected crop to be (top, bottom, left, right) pixel counts >= 0, got (1, 2, 3)",
        ),
        (
            {"crop": (-1, 0, 0, 0)},
            "Expected crop to be (top, bottom, left, right) pixel counts >= 0, got (-1, 0, 0, 0)",
        ),
        ({"frame_stack": 0}, "Expected frame_stack >= 1, got 0"),
        ({"frame_stack": 2.0}, "Expected frame_stack to be an int, got float"),
        ({"reward_scale": float("nan")}, "Expected reward_scale to be a finite number, got nan"),
        ({"clip_reward": 0}, "Expected clip_reward to be None or a number > 0, got 0"),
    ],
)
def test_bad_preprocessing_options_raise_before_any_worker_starts(options, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        VecRetroEnv(GAME, 2, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"crop": (200, 30, 0, 0)}, "crop=(200, 30, 0, 0) leaves no pixels of the 224x320 screen"),
        (
            {"resize": (300, 84)},
            "Expected resize to shrink the 224x320 (cropped) screen, got (300, 84): "
            "area averaging does not enlarge",
        ),
        (
            {"crop": (0, 0, 300, 0), "resize": (84, 84)},
            "Expected resize to shrink the 224x20 (cropped) screen, got (84, 84)",
        ),
    ],
)
def test_options_that_do_not_fit_the_screen_raise_and_stop_the_workers(options, message):
    # These need the screen size, which only a worker knows: the pool closes its workers
    # before raising (the autouse fixture checks that none is left).
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        VecRetroEnv(GAME, 2, **options)


def test_copy_into_copies_stack_views_and_plain_arrays():
    from fastretro.runtime.preprocess import copy_into, stack_views

    ring = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 8), dtype=np.uint8)
    for view in [*stack_views(ring, 4, 1), ring[:, 1:4], ring]:
        out = np.empty(view.shape, np.uint8)
        copy_into(view, out)
        np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize(
    "options",
    [
        {"grayscale": True, "resize": (42, 42), "frame_stack": 4, "max_pool": True},
        {"grayscale": True, "frame_stack": 3},
        {"resize": (56, 80), "frame_stack": 2},
        {"grayscale": True},
        {},
    ],
)
def test_channels_first_is_the_channels_last_observation_transposed(options):
    acts = buttons(8, 2, seed=9)
    with (
        VecRetroEnv(GAME, 2, frameskip=2, channels_first=True, **options) as chw,
        VecRetroEnv(GAME, 2, frameskip=2, **options) as hwc,
    ):
        h, w, c = hwc.single_observation_space.shape
        assert chw.single_observation_space.shape == (c, h, w)
        pairs = [(chw.reset(seed=0)[0], hwc.reset(seed=0)[0])]
        for a in acts:
            pairs.append((chw.step(a)[0], hwc.step(a)[0]))
            first, last = pairs[-1]
            # A channels-first stack is contiguous per env (what PyTorch wants).
            assert first[0].flags.c_contiguous
            np.testing.assert_array_equal(first, np.moveaxis(last, -1, 1))


@pytest.mark.parametrize(
    "options, direct",
    [
        ({}, True),
        ({"grayscale": True}, False),
        ({"resize": (112, 160)}, False),
        ({"crop": (8, 0, 0, 0)}, False),
        ({"crop": (0, 8, 0, 0)}, False),
        ({"max_pool": True, "frameskip": 2}, False),
        ({"frame_stack": 2}, False),
        ({"channels_first": True}, False),
    ],
)
def test_only_the_unprocessed_picture_is_written_in_place(options, direct):
    from fastretro.config import EnvConfig
    from fastretro.runtime.preprocess import FrameWriter

    prep = EnvConfig(game=GAME, **options).preprocessing
    screen = (224, 320, 3)
    row = np.zeros(prep.buffer_shape(screen), np.uint8)
    writer = FrameWriter(prep, screen, (0, 0, 224, 320), None, row, np.zeros(1, np.int64))
    frame = writer.direct_frame()
    assert (frame is not None) == direct
    if direct:
        assert np.shares_memory(frame, row) and frame.shape == screen
        # The writer then leaves a picture already in its row as it is.
        frame[...] = 7
        writer(frame, None, True)
        assert (row == 7).all()
    # A rotated or windowed picture is never written in place.
    rotated = FrameWriter(prep, screen, (0, 0, 224, 320), np.rot90, row, np.zeros(1, np.int64))
    assert rotated.direct_frame() is None
    windowed = FrameWriter(prep, screen, (4, 0, 220, 320), None, row, np.zeros(1, np.int64))
    assert windowed.direct_frame() is None
