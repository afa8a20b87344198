"""Every kernel against its plain-numpy reference (tests/naive.py) and against OpenCV."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import naive
import numpy as np
import pytest

from fastretro.runtime import kernels

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is a test extra")

# (source height, width) -> (destination height, width): the contest's 224x320 -> 84x84, Atari's
# 210x160, odd and prime sizes, integer factors (OpenCV's fast path), no-op and 1-pixel results.
RESIZES = [
    ((224, 320), (84, 84)),
    ((210, 160), (84, 84)),
    ((37, 53), (11, 7)),
    ((31, 17), (31, 17)),
    ((64, 96), (32, 48)),
    ((5, 9), (1, 1)),
    ((100, 3), (7, 2)),
]


def frames(shape, seed=0):
    """Random, all-black and all-white uint8 frames of ``shape``."""
    rng = np.random.default_rng(seed)
    return {
        "random": rng.integers(0, 256, shape, dtype=np.uint8),
        "black": np.zeros(shape, np.uint8),
        "white": np.full(shape, 255, np.uint8),
    }


def resize_cv2(img, h, w):
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("shape", [(224, 320, 3), (7, 13, 3), (1, 1, 3)])
def test_rgb_to_gray_is_opencv_exactly(shape):
    for name, src in frames(shape).items():
        out = np.empty(shape[:2], np.uint8)
        kernels.rgb_to_gray_into(src, out)
        np.testing.assert_array_equal(out, cv2.cvtColor(src, cv2.COLOR_RGB2GRAY), err_msg=name)
        assert np.abs(out.astype(int) - naive.rgb_to_gray(src)).max() <= 1


def test_gray_of_every_pure_channel_value_matches_opencv():
    src = np.zeros((3, 256, 3), np.uint8)
    for c in range(3):
        src[c, :, c] = np.arange(256)
    out = np.empty((3, 256), np.uint8)
    kernels.rgb_to_gray_into(src, out)
    np.testing.assert_array_equal(out, cv2.cvtColor(src, cv2.COLOR_RGB2GRAY))


def test_area_table_weights_sum_to_one_per_destination():
    for (sh, sw), (dh, dw) in RESIZES:
        for n, m in ((sh, dh), (sw, dw)):
            t = kernels.area_table(n, m)
            np.testing.assert_allclose(t.taps.sum(axis=0), 1.0, rtol=1e-5)
            per_dst = np.zeros(m)
            np.add.at(per_dst, t.dst0, t.weight0)
            np.add.at(per_dst, t.dst1, t.weight1)
            np.testing.assert_allclose(per_dst, 1.0, rtol=1e-5)


def test_area_table_rejects_enlarging():
    with pytest.raises(ValueError, match=r"Expected a destination length in \[1, 10\], got 11"):
        kernels.area_table(10, 11)


@pytest.mark.parametrize(("src_hw", "dst_hw"), RESIZES)
@pytest.mark.parametrize("pool", [False, True])
def test_fused_gray_resize_matches_opencv_and_naive(src_hw, dst_hw, pool):
    (sh, sw), (dh, dw) = src_hw, dst_hw
    ty, tx = kernels.area_table(sh, dh), kernels.area_table(sw, dw)
    prev = np.random.default_rng(99).integers(0, 256, (sh, sw, 3), dtype=np.uint8)
    for name, src in frames((sh, sw, 3)).items():
        out = np.empty((dh, dw, 1), np.uint8)
        kernels.gray_area_resize_into(src, prev, pool, 0, 0, ty, tx, out)
        frame = np.maximum(src, prev) if pool else src
        expected = resize_cv2(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), dh, dw).reshape(dh, dw)
        assert np.abs(out[..., 0].astype(int) - expected).max() <= 1, name
        ref = naive.preprocess(src, prev if pool else None, grayscale=True, resize=(dh, dw))
        assert np.abs(out.astype(int) - ref).max() <= 1, name
        if name != "random" and not pool:
            np.testing.assert_array_equal(out, ref)  # flat frames stay exactly flat


@pytest.mark.parametrize(("src_hw", "dst_hw"), RESIZES)
@pytest.mark.parametrize("pool", [False, True])
def test_gray_plane_resize_matches_opencv_and_naive(src_hw, dst_hw, pool):
    # The path of emulators that hand over a gray picture: the gray kernel less the luma.
    (sh, sw), (dh, dw) = src_hw, dst_hw
    ty, tx = kernels.area_table(sh, dh), kernels.area_table(sw, dw)
    prev = np.random.default_rng(98).integers(0, 256, (sh, sw), dtype=np.uint8)
    for name, rgb in frames((sh, sw, 3), seed=3).items():
        src = np.ascontiguousarray(rgb[..., 0])
        out = np.empty((dh, dw, 1), np.uint8)
        kernels.plane_area_resize_into(src, prev, pool, 0, 0, ty, tx, out)
        frame = np.maximum(src, prev) if pool else src
        expected = resize_cv2(frame, dh, dw).reshape(dh, dw)
        assert np.abs(out[..., 0].astype(int) - expected).max() <= 1, name
        ref = naive.area_resize(naive.max_pool(src, prev) if pool else src, dh, dw)
        assert np.abs(out[..., 0].astype(int) - ref).max() <= 1, name
    crop = np.empty((sh - 3, sw - 2, 1), np.uint8)
    kernels.plane_crop_into(src, prev, pool, 2, 1, crop)
    ref = naive.crop(naive.max_pool(src, prev) if pool else src, 2, 1, 1, 1)
    np.testing.assert_array_equal(crop[..., 0], ref)


@pytest.mark.parametrize(("src_hw", "dst_hw"), RESIZES)
@pytest.mark.parametrize("pool", [False, True])
def test_palette_kernels_are_the_plane_kernels_of_the_looked_up_grays(src_hw, dst_hw, pool):
    # ALE's path: colour codes and a gray palette; the grays must be the plane path's exactly.
    (sh, sw), (dh, dw) = src_hw, dst_hw
    ty, tx = kernels.area_table(sh, dh), kernels.area_table(sw, dw)
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, 256, dtype=np.uint8)
    prev = rng.integers(0, 256, (sh, sw), dtype=np.uint8)
    # Random codes; codes equal to prev's on a third of the pixels (the lookup's shortcut).
    same = rng.random((sh, sw)) < 1 / 3
    cases = {name: np.where(same, prev, f[..., 0]) for name, f in frames((sh, sw, 3), 5).items()}
    cases["prev"] = prev.copy()
    for name, codes in cases.items():
        codes = np.ascontiguousarray(codes)
        out = np.empty((dh, dw, 1), np.uint8)
        kernels.palette_area_resize_into(codes, prev, pool, palette, 0, 0, ty, tx, out)
        want = np.empty_like(out)
        kernels.plane_area_resize_into(palette[codes], palette[prev], pool, 0, 0, ty, tx, want)
        np.testing.assert_array_equal(out, want, err_msg=name)
        grays = naive.max_pool(palette[codes], palette[prev]) if pool else palette[codes]
        ref = naive.area_resize(grays, dh, dw)
        assert np.abs(out[..., 0].astype(int) - ref).max() <= 1, name
    crop = np.empty((sh - 3, sw - 2, 1), np.uint8)
    kernels.palette_crop_into(codes, prev, pool, palette, 2, 1, crop)
    grays = naive.max_pool(palette[codes], palette[prev]) if pool else palette[codes]
    np.testing.assert_array_equal(crop[..., 0], naive.crop(grays, 2, 1, 1, 1))


def test_palette_resize_reads_the_window():
    ty, tx = kernels.area_table(20, 10), kernels.area_table(30, 15)
    palette = np.arange(256, dtype=np.uint8)[::-1].copy()
    codes = np.random.default_rng(2).integers(0, 256, (25, 40), dtype=np.uint8)
    out, want = np.empty((10, 15, 1), np.uint8), np.empty((10, 15, 1), np.uint8)
    kernels.palette_area_resize_into(codes, codes, False, palette, 3, 6, ty, tx, out)
    window = np.ascontiguousarray(palette[codes[3:23, 6:36]])
    kernels.plane_area_resize_into(window, window, False, 0, 0, ty, tx, want)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize(("src_hw", "dst_hw"), RESIZES)
def test_rgb_area_resize_matches_opencv_and_naive(src_hw, dst_hw):
    (sh, sw), (dh, dw) = src_hw, dst_hw
    ty, tx = kernels.area_table(sh, dh), kernels.area_table(sw, dw)
    for name, src in frames((sh, sw, 3), seed=1).items():
        out = np.empty((dh, dw, 3), np.uint8)
        kernels.area_resize_into(src, src, False, 0, 0, ty, tx, out)
        expected = resize_cv2(src, dh, dw).reshape(dh, dw, 3)
        assert np.abs(out.astype(int) - expected).max() <= 1, name
        assert np.abs(out.astype(int) - naive.area_resize(src, dh, dw)).max() <= 1, name


def test_fused_kernels_crop_a_window_of_the_whole_frame():
    src = frames((40, 50, 3), seed=2)["random"]
    prev = frames((40, 50, 3), seed=3)["random"]
    top, bottom, left, right = 3, 5, 7, 2
    window = (40 - top - bottom, 50 - left - right)
    ty, tx = kernels.area_table(window[0], 9), kernels.area_table(window[1], 13)
    out = np.empty((9, 13, 1), np.uint8)
    kernels.gray_area_resize_into(src, prev, True, top, left, ty, tx, out)
    ref = naive.preprocess(
        src, prev, grayscale=True, resize=(9, 13), crop_margins=(top, bottom, left, right)
    )
    assert np.abs(out.astype(int) - ref).max() <= 1
    rgb = np.empty((9, 13, 3), np.uint8)
    kernels.area_resize_into(src, prev, True, top, left, ty, tx, rgb)
    ref = naive.preprocess(src, prev, resize=(9, 13), crop_margins=(top, bottom, left, right))
    assert np.abs(rgb.astype(int) - ref).max() <= 1
    gray = np.empty((*window, 1), np.uint8)
    kernels.gray_crop_into(src, prev, True, top, left, gray)
    ref = naive.preprocess(src, prev, grayscale=True, crop_margins=(top, bottom, left, right))
    assert np.abs(gray.astype(int) - ref).max() <= 1
    np.testing.assert_array_equal(
        gray[..., 0],
        cv2.cvtColor(
            np.ascontiguousarray(naive.crop(np.maximum(src, prev), top, bottom, left, right)),
            cv2.COLOR_RGB2GRAY,
        ),
    )


def test_kernels_write_into_strided_outputs():
    # The frame stack hands the kernels a channel slice of a wider buffer.
    src = frames((30, 40, 3), seed=4)["random"]
    ty, tx = kernels.area_table(30, 10), kernels.area_table(40, 12)
    ring = np.zeros((10, 12, 8), np.uint8)
    kernels.gray_area_resize_into(src, src, False, 0, 0, ty, tx, ring[:, :, 5:6])
    expected = np.empty((10, 12, 1), np.uint8)
    kernels.gray_area_resize_into(src, src, False, 0, 0, ty, tx, expected)
    np.testing.assert_array_equal(ring[:, :, 5:6], expected)
    assert not ring[:, :, [0, 1, 2, 3, 4, 6, 7]].any()


def test_gray_kernels_write_a_rings_two_slots_at_once():
    # Every channel of the output gets the gray: the frame stack hands its slots s and s + k as
    # one (h, w, 2) view of the ring, and nothing else of the ring is written.
    rgb = frames((30, 40, 3), seed=7)["random"]
    plane = np.ascontiguousarray(rgb[..., 1])
    palette = np.arange(256, dtype=np.uint8)[::-1].copy()
    ty, tx = kernels.area_table(28, 10), kernels.area_table(37, 12)
    calls = {
        "gray_area_resize_into": lambda o: kernels.gray_area_resize_into(
            rgb, rgb, True, 1, 2, ty, tx, o
        ),
        "gray_crop_into": lambda o: kernels.gray_crop_into(rgb, rgb, True, 1, 2, o),
        "plane_area_resize_into": lambda o: kernels.plane_area_resize_into(
            plane, plane, False, 1, 2, ty, tx, o
        ),
        "plane_crop_into": lambda o: kernels.plane_crop_into(plane, plane, False, 1, 2, o),
        "palette_area_resize_into": lambda o: kernels.palette_area_resize_into(
            plane, plane, True, palette, 1, 2, ty, tx, o
        ),
        "palette_crop_into": lambda o: kernels.palette_crop_into(
            plane, plane, True, palette, 1, 2, o
        ),
    }
    for name, call in calls.items():
        h, w = (10, 12) if "resize" in name else (28, 37)
        one = np.empty((h, w, 1), np.uint8)
        call(one)
        ring = np.zeros((h, w, 8), np.uint8)
        call(ring[:, :, 1::4])
        np.testing.assert_array_equal(ring[:, :, 1], one[..., 0], err_msg=name)
        np.testing.assert_array_equal(ring[:, :, 5], one[..., 0], err_msg=name)
        assert not ring[:, :, [0, 2, 3, 4, 6, 7]].any(), name


def test_max_into_and_crop_into_match_numpy():
    a, b = frames((9, 11, 3), seed=5)["random"], frames((9, 11, 3), seed=6)["random"]
    out = np.empty_like(a)
    kernels.max_into(a, b, out)
    np.testing.assert_array_equal(out, naive.max_pool(a, b))
    window = np.empty((4, 5, 3), np.uint8)
    kernels.crop_into(a, 2, 3, window)
    np.testing.assert_array_equal(window, naive.crop(a, 2, 3, 3, 3))


def test_kernels_agree_with_their_pure_python_selves():
    # NUMBA_DISABLE_JIT=1 runs the kernels as plain Python: coverage tools see their lines, and
    # any difference between compiled and interpreted integer/float semantics shows up here.
    code = """
import json, numpy as np
from fastretro.runtime import kernels
rng = np.random.default_rng(7)
src, prev = rng.integers(0, 256, (2, 23, 31, 3), dtype=np.uint8)
ty, tx = kernels.area_table(20, 9), kernels.area_table(27, 8)
gray = np.empty((9, 8, 1), np.uint8)
kernels.gray_area_resize_into(src, prev, True, 2, 3, ty, tx, gray)
rgb = np.empty((9, 8, 3), np.uint8)
kernels.area_resize_into(src, prev, False, 2, 3, ty, tx, rgb)
crop = np.empty((20, 27, 1), np.uint8)
kernels.gray_crop_into(src, prev, True, 2, 3, crop)
plane = np.empty((9, 8, 1), np.uint8)
kernels.plane_area_resize_into(src[..., 1].copy(), prev[..., 1].copy(), True, 2, 3, ty, tx, plane)
palette = rng.integers(0, 256, 256, dtype=np.uint8)
codes, before = src[..., 0].copy(), prev[..., 0].copy()
coded = np.empty((9, 8, 1), np.uint8)
kernels.palette_area_resize_into(codes, before, True, palette, 2, 3, ty, tx, coded)
coded_crop = np.empty((20, 27, 1), np.uint8)
kernels.palette_crop_into(codes, before, True, palette, 2, 3, coded_crop)
print(json.dumps([gray.tolist(), rgb.tolist(), crop.tolist(), plane.tolist(), coded.tolist(),
                  coded_crop.tolist()]))
"""
    results = []
    for disable in ("1", "0"):
        env = {**os.environ, "NUMBA_DISABLE_JIT": disable}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        results.append(json.loads(out.stdout))
    assert results[0] == results[1]
