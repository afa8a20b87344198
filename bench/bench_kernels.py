"""The fused resize kernels against OpenCV (and numpy) on one 224x320 frame (pytest-benchmark).

The gray one at the contest's 84x84, the RGB one at World Models' 64x64.

Run: ``python -m pytest bench/bench_kernels.py --benchmark-columns=min,median,mean``
Every variant of a size produces the same frame (within one level; checked before timing).
"""

from __future__ import annotations

import numpy as np
import pytest

from fastretro.runtime import kernels

cv2 = pytest.importorskip("cv2", reason="the comparison needs OpenCV (pip install .[test])")

H, W, SIZE = 224, 320, (84, 84)
FRAME = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
PREV = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
TY, TX = kernels.area_table(H, SIZE[0]), kernels.area_table(W, SIZE[1])
OUT = np.empty((*SIZE, 1), np.uint8)


def _matrix(table: kernels.AreaTable, src_len: int) -> np.ndarray:
    # The area weights as a dense (dst, src) matrix, for the numpy variant.
    m = np.zeros((table.taps.shape[1], src_len), np.float32)
    for k in range(table.taps.shape[0]):
        np.add.at(m, (np.arange(m.shape[0]), table.index[k]), table.taps[k])
    return m


MY, MX = _matrix(TY, H), _matrix(TX, W)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def fused():
    kernels.gray_area_resize_into(FRAME, FRAME, False, 0, 0, TY, TX, OUT)
    return OUT[..., 0]


def fused_max_pool():
    kernels.gray_area_resize_into(FRAME, PREV, True, 0, 0, TY, TX, OUT)
    return OUT[..., 0]


def opencv_pair():
    gray = cv2.cvtColor(FRAME, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, SIZE[::-1], interpolation=cv2.INTER_AREA)


def opencv_pair_max_pool():
    gray = cv2.cvtColor(np.maximum(FRAME, PREV), cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, SIZE[::-1], interpolation=cv2.INTER_AREA)


def numpy_matmul():
    # The best plain numpy: luma as a dot product, area resize as two matrix products.
    gray = np.rint(FRAME @ LUMA)
    return np.floor(MY @ gray @ MX.T + 0.5).astype(np.uint8)


VARIANTS = {
    "fused": fused,
    "fused_max_pool": fused_max_pool,
    "opencv_pair": opencv_pair,
    "opencv_pair_max_pool": opencv_pair_max_pool,
    "numpy_matmul": numpy_matmul,
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_gray_resize_224x320_to_84x84(benchmark, name):
    expected = opencv_pair_max_pool() if name.endswith("max_pool") else opencv_pair()
    assert np.abs(VARIANTS[name]().astype(int) - expected).max() <= 1
    benchmark.extra_info["threads"] = cv2.getNumThreads()
    benchmark(VARIANTS[name])


RGB_SIZE = (64, 64)
RGB_TY, RGB_TX = kernels.area_table(H, RGB_SIZE[0]), kernels.area_table(W, RGB_SIZE[1])
RGB_OUT = np.empty((*RGB_SIZE, 3), np.uint8)


def fused_rgb():
    kernels.area_resize_into(FRAME, FRAME, False, 0, 0, RGB_TY, RGB_TX, RGB_OUT)
    return RGB_OUT


def opencv_rgb():
    return cv2.resize(FRAME, RGB_SIZE[::-1], interpolation=cv2.INTER_AREA)


RGB_VARIANTS = {"fused": fused_rgb, "opencv": opencv_rgb}


@pytest.mark.parametrize("name", list(RGB_VARIANTS))
def test_rgb_resize_224x320_to_64x64(benchmark, name):
    expected = opencv_rgb()
    assert np.abs(RGB_VARIANTS[name]().astype(int) - expected).max() <= 1
    benchmark.extra_info["threads"] = cv2.getNumThreads()
    benchmark(RGB_VARIANTS[name])
