"""Image kernels: RGB->gray, area-average resize, crop, max of two frames, and the fused paths.

The fused kernels read RGB frames, an emulator's gray picture, or its colour codes with a gray
palette (``palette_*``), and write the observation in one pass.

The arithmetic follows OpenCV's, so that a policy trained on frames preprocessed here sees what
it would see through ``cv2.cvtColor(..., cv2.COLOR_RGB2GRAY)`` and
``cv2.resize(..., interpolation=cv2.INTER_AREA)``:

- gray is ITU-R 601 luma in OpenCV's 15-bit fixed point,
  ``(9798 R + 19235 G + 3735 B + 16384) >> 15``, so it is bit-identical to ``cvtColor``;
- area resize averages every source pixel a destination pixel covers, weighted by the covered
  fraction, with OpenCV's weight table (``computeResizeAreaTab``) in float32; results may
  differ from OpenCV by one gray level where a sum rounds differently.

Area resize only shrinks (each source pixel then touches at most two destination pixels per axis,
which is what lets the kernels make a single pass over the source).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from fastretro.runtime.jit import JIT

_JIT = {**JIT, "boundscheck": False}

# OpenCV's RGB->gray coefficients (0.299, 0.587, 0.114) in 15-bit fixed point (they sum to 2^15,
# so white stays 255). Checked bit-exact against cv2.cvtColor in tests/runtime/test_kernels.py.
_R2Y, _G2Y, _B2Y, _SHIFT = 9798, 19235, 3735, 15
_HALF = 1 << (_SHIFT - 1)
# The gray kernels' "no palette": their one-channel input is gray already.
_NO_PALETTE = np.zeros(0, np.uint8)


class AreaTable(NamedTuple):
    """The weights of an area-average resize along one axis, in two equivalent forms.

    Forward (per source index ``s``): ``s`` adds ``weight0[s]`` of itself to destination
    ``dst0[s]`` and ``weight1[s]`` to ``dst1[s]`` (``weight1`` is 0 where it touches only one).
    Backward (per destination index ``d``): ``d`` is ``sum(taps[k, d] * src[index[k, d]])``
    over ``k`` (``taps`` is zero-padded to a common width). The weights of each destination sum
    to 1. The backward form is tap-major so that a kernel sweeps all destinations for one tap
    with contiguous loads.
    """

    dst0: np.ndarray  # int32 (src_len,)
    weight0: np.ndarray  # float32 (src_len,)
    dst1: np.ndarray  # int32 (src_len,)
    weight1: np.ndarray  # float32 (src_len,)
    index: np.ndarray  # int32 (width, dst_len)
    taps: np.ndarray  # float32 (width, dst_len)


def area_table(src_len: int, dst_len: int) -> AreaTable:
    """The per-axis weights of ``cv2.resize(INTER_AREA)`` from ``src_len`` to ``dst_len`` pixels.

    Raises:
        ValueError: if ``dst_len`` is not in ``[1, src_len]`` (area resize only shrinks).
    """
    if not 1 <= dst_len <= src_len:
        raise ValueError(f"Expected a destination length in [1, {src_len}], got {dst_len}")
    entries: list[tuple[int, int, np.float32]] = []  # (dst, src, weight)
    # OpenCV's computeResizeAreaTab (imgproc/src/resize.cpp), entry for entry.
    scale = 1.0 / (dst_len / src_len)
    for d in range(dst_len):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, src_len - f1)
        s2 = min(math.floor(f2), src_len - 1)
        s1 = min(math.ceil(f1), s2)
        if s1 - f1 > 1e-3:
            entries.append((d, s1 - 1, np.float32((s1 - f1) / cell)))
        for s in range(s1, s2):
            entries.append((d, s, np.float32(1.0 / cell)))
        if f2 - s2 > 1e-3:
            entries.append((d, s2, np.float32(min(min(f2 - s2, 1.0), cell) / cell)))

    dst0 = np.zeros(src_len, np.int32)
    dst1 = np.zeros(src_len, np.int32)
    w0 = np.zeros(src_len, np.float32)
    w1 = np.zeros(src_len, np.float32)
    first = np.ones(src_len, bool)
    for d, s, w in entries:
        if first[s]:
            dst0[s], w0[s], first[s] = d, w, False
        else:
            assert w1[s] == 0, "when shrinking, a source pixel touches at most two destinations"
            dst1[s], w1[s] = d, w

    lo = np.full(dst_len, src_len, np.int64)
    hi = np.zeros(dst_len, np.int64)
    for d, s, _ in entries:
        lo[d], hi[d] = min(lo[d], s), max(hi[d], s + 1)
    width = int((hi - lo).max())
    # Shift windows that would run past the end left, so every tap reads inside the source.
    start = np.minimum(lo, src_len - width)
    index = (start[None, :] + np.arange(width)[:, None]).astype(np.int32)
    taps = np.zeros((width, dst_len), np.float32)
    for d, s, w in entries:
        taps[s - start[d], d] = w
    return AreaTable(dst0, w0, dst1, w1, index, taps)


@numba.njit(**_JIT)
def _luma(r, g, b):
    return (np.int32(r) * _R2Y + np.int32(g) * _G2Y + np.int32(b) * _B2Y + _HALF) >> _SHIFT


@numba.njit(**_JIT)
def _round_u8(v):
    # Round half up and saturate, as OpenCV's integer paths do; sums are never negative.
    return np.uint8(min(np.int32(v + np.float32(0.5)), 255))


@numba.njit(**_JIT)
def rgb_to_gray_into(src, out):
    """Gray ``out[y, x]`` (uint8, (H, W)) of RGB ``src[y, x]`` (uint8, (H, W, 3)); as cvtColor."""
    for y in range(src.shape[0]):
        for x in range(src.shape[1]):
            out[y, x] = _luma(src[y, x, 0], src[y, x, 1], src[y, x, 2])


@numba.njit(**_JIT)
def max_into(a, b, out):
    """Element-wise maximum of two uint8 frames of the same shape, (H, W, C), into ``out``."""
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            for c in range(a.shape[2]):
                out[y, x, c] = max(a[y, x, c], b[y, x, c])


@numba.njit(**_JIT)
def crop_into(src, top, left, out):
    """The window of ``src`` (H, W, C) at ``(top, left)`` with ``out``'s shape, copied into it."""
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            for c in range(out.shape[2]):
                out[y, x, c] = src[top + y, left + x, c]


# The fused kernels take whole C-contiguous frames plus the crop's (top, left) rather than crop
# views: a row of a C-contiguous frame is a flat run of bytes that LLVM vectorizes (a strided
# view made the gray loop 4x slower when measured). They view each frame as (H, W * C) once
# per call and hand the row loops 1-D rows of it: a reshape per row cost more than the rest of
# the vertical pass (bench/bench_kernels.py).


@numba.njit(**_JIT)
def _flat(frame):
    # (H, W, C) as (H, W * C): a view of the C-contiguous frame.
    return frame.reshape(frame.shape[0], frame.shape[1] * frame.shape[2])


@numba.njit(**_JIT)
def _rgb_line(a, b, pool, line):
    # One source row's RGB values (max-pooled with b's if pool) into the float32 line.
    if pool:
        for i in range(line.shape[0]):
            line[i] = max(a[i], b[i])
    else:
        for i in range(line.shape[0]):
            line[i] = a[i]


@numba.njit(**_JIT)
def _add_scaled(acc, values, weight):
    for x in range(acc.shape[0]):
        acc[x] += weight * values[x]


@numba.njit(**_JIT)
def _accumulate(rows, line, ty, y):
    # Source row y adds itself, weighted, to the (at most two) destination rows it overlaps.
    _add_scaled(rows[ty.dst0[y]], line, ty.weight0[y])
    if ty.weight1[y] != 0:
        _add_scaled(rows[ty.dst1[y]], line, ty.weight1[y])


@numba.njit(**_JIT)
def _reduce_rgb_rows_into(rows, tx, out):
    # Horizontal area average of each vertically-summed RGB row, rounded into out. Tap-major,
    # as the gray rows' (_reduce_rows_gray_into), each tap's weight and index serving the three
    # channels' sums: less than half the time of one channel's taps after another's (a sum's
    # own chain of adds) over the same tables (bench/bench_kernels.py's world-models size).
    n = out.shape[1]
    acc = np.empty((3, n), np.float32)
    for i in range(out.shape[0]):
        row = rows[i]
        acc[:] = 0
        for k in range(tx.taps.shape[0]):
            for j in range(n):
                weight, s = tx.taps[k, j], 3 * tx.index[k, j]
                acc[0, j] += weight * row[s]
                acc[1, j] += weight * row[s + 1]
                acc[2, j] += weight * row[s + 2]
        for c in range(3):
            for j in range(n):
                out[i, j, c] = _round_u8(acc[c, j])


@numba.njit(**_JIT)
def _gray_row_into(a, b, c, pool, palette, gray):
    # Integer gray of the source row a (max-pooled with b if pool), c channels a pixel, from
    # the window's first pixel on, into the int32 line; a one-channel source is gray already
    # (an emulator's own gray picture), or colour codes to look up in ``palette`` when it is
    # not empty. Rows sliced at the window, rather than `left` added to every index, and the
    # stride-3 gather in a loop of its own (the float adds follow in another) are what let
    # LLVM vectorize it (bench/bench_kernels.py measures it).
    if c == 1 and palette.shape[0] != 0:
        if pool:
            for x in range(gray.shape[0]):
                gray[x] = max(palette[a[x]], palette[b[x]])
        else:
            for x in range(gray.shape[0]):
                gray[x] = palette[a[x]]
    elif c == 1:
        if pool:
            for x in range(gray.shape[0]):
                gray[x] = max(a[x], b[x])
        else:
            for x in range(gray.shape[0]):
                gray[x] = a[x]
    elif pool:
        for x in range(gray.shape[0]):
            i = 3 * x
            gray[x] = _luma(max(a[i], b[i]), max(a[i + 1], b[i + 1]), max(a[i + 2], b[i + 2]))
    else:
        for x in range(gray.shape[0]):
            i = 3 * x
            gray[x] = _luma(a[i], a[i + 1], a[i + 2])


@numba.njit(**_JIT)
def _add_weighted(acc, gray, weight):
    for x in range(acc.shape[0]):
        acc[x] += weight * np.float32(gray[x])


@numba.njit(**_JIT)
def _reduce_line_into(line, tx, acc, out, i):
    # Horizontal area average of one vertically-summed gray row into each channel of out[i].
    # The tap loop is outside so that the sums of all destinations advance independently
    # (summing each destination's taps in turn is one long dependency chain), over tap-major
    # tables.
    acc[:] = 0
    for k in range(tx.taps.shape[0]):
        for j in range(acc.shape[0]):
            acc[j] += tx.taps[k, j] * line[tx.index[k, j]]
    _write_row(acc, out, i)


@numba.njit(**_JIT)
def _write_row(acc, out, i):
    # The rounded sums into channel 0 of out[i], then copied into any other channel (a ring's
    # second slot): one loop per channel keeps the one-channel writes vector.
    for j in range(acc.shape[0]):
        out[i, j, 0] = _round_u8(acc[j])
    for channel in range(1, out.shape[2]):
        for j in range(acc.shape[0]):
            out[i, j, channel] = out[i, j, 0]


@numba.njit(**_JIT)
def _reduce_rows_gray_into(rows, tx, out):
    # Horizontal area average of every vertically-summed gray row into out, four rows at a
    # time: each tap's weight and index, loaded once, serve four rows' sums (the gather from
    # the rows is what the pass costs; it takes 2/3 of the time of one row at a time,
    # bench/bench_kernels.py). Each sum adds its taps in the same order as one row's.
    n = out.shape[1]
    acc = np.empty((4, n), np.float32)
    grouped = out.shape[0] - out.shape[0] % 4
    for i in range(0, grouped, 4):
        r0, r1, r2, r3 = rows[i], rows[i + 1], rows[i + 2], rows[i + 3]
        acc[:] = 0
        for k in range(tx.taps.shape[0]):
            for j in range(n):
                weight, s = tx.taps[k, j], tx.index[k, j]
                acc[0, j] += weight * r0[s]
                acc[1, j] += weight * r1[s]
                acc[2, j] += weight * r2[s]
                acc[3, j] += weight * r3[s]
        for q in range(4):
            _write_row(acc[q], out, i + q)
    for i in range(grouped, out.shape[0]):
        _reduce_line_into(rows[i], tx, acc[0], out, i)


@numba.njit(**_JIT)
def gray_area_resize_into(src, prev, pool, top, left, ty, tx, out):
    """Fused crop + gray + area resize (+ max-pool) in one pass over the source frame.

    Equivalent to ``cv2.resize(cv2.cvtColor(frame, RGB2GRAY), (w, h), interpolation=INTER_AREA)``
    where ``frame`` is the window of ``src`` (or of ``np.maximum(src, prev)`` when ``pool``)
    at ``(top, left)`` of size ``(len(ty.dst0), len(tx.dst0))``.

    Each source row is converted to gray and added, weighted, into the (at most two)
    destination rows it overlaps, kept as full-width float rows (an (h, width) block, in L2
    cache); then the rows are reduced horizontally, four at a time.

    Args:
        src: uint8 (H, W, 3), C-contiguous, the newest RGB frame; (H, W, 1) is gray already.
        prev: uint8, shaped as ``src``, the frame before it (ignored unless ``pool``; pass
            ``src`` itself then).
        pool: max-pool ``src`` and ``prev`` before converting.
        top: first row of the window.
        left: first column of the window.
        ty: :func:`area_table` of the window's height to ``h``.
        tx: :func:`area_table` of the window's width to ``w``.
        out: uint8 (h, w, C), any strides; every channel gets the gray (a frame stack's ring
            writes a frame's two slots at once: fastretro/runtime/preprocess.py).
    """
    width = tx.dst0.shape[0]
    rows = np.zeros((out.shape[0], width), np.float32)
    gray = np.empty(width, np.int32)
    c = src.shape[2]
    a, b = _flat(src), _flat(prev)
    for y in range(ty.dst0.shape[0]):
        _gray_row_into(a[top + y, c * left :], b[top + y, c * left :], c, pool, _NO_PALETTE, gray)
        _add_weighted(rows[ty.dst0[y]], gray, ty.weight0[y])
        if ty.weight1[y] != 0:
            _add_weighted(rows[ty.dst1[y]], gray, ty.weight1[y])
    _reduce_rows_gray_into(rows, tx, out)


@numba.njit(**_JIT)
def area_resize_into(src, prev, pool, top, left, ty, tx, out):
    """Fused crop + area resize (+ max-pool) of an RGB frame: the color twin of the gray kernel.

    Equivalent to ``cv2.resize(frame, (w, h), interpolation=INTER_AREA)``; ``out`` is uint8
    (h, w, 3), any strides.
    """
    line = np.empty(tx.dst0.shape[0] * 3, np.float32)
    rows = np.zeros((out.shape[0], line.shape[0]), np.float32)
    a, b = _flat(src), _flat(prev)
    for y in range(ty.dst0.shape[0]):
        _rgb_line(a[top + y, 3 * left :], b[top + y, 3 * left :], pool, line)
        _accumulate(rows, line, ty, y)
    _reduce_rgb_rows_into(rows, tx, out)


@numba.njit(**_JIT)
def gray_crop_into(src, prev, pool, top, left, out):
    """Crop + gray (+ max-pool), no resize, into each channel of ``out`` (uint8 (h, w, C))."""
    _gray_crop_into(src, prev, pool, _NO_PALETTE, top, left, out)


@numba.njit(**_JIT)
def _gray_crop_into(src, prev, pool, palette, top, left, out):
    gray = np.empty(out.shape[1], np.int32)
    c = src.shape[2]
    a, b = _flat(src), _flat(prev)
    for y in range(out.shape[0]):
        _gray_row_into(a[top + y, c * left :], b[top + y, c * left :], c, pool, palette, gray)
        for channel in range(out.shape[2]):
            for x in range(out.shape[1]):
                out[y, x, channel] = np.uint8(gray[x])


# -- gray planes: emulators that hand over a gray picture (ALE's getScreenGrayscale) ----------


@numba.njit(**_JIT)
def plane_area_resize_into(src, prev, pool, top, left, ty, tx, out):
    """Crop + area resize (+ max-pool) of a gray plane: the gray kernel without the luma.

    Equivalent to ``cv2.resize(frame, (w, h), interpolation=INTER_AREA)`` where ``frame`` is
    the window of ``src`` (or of ``np.maximum(src, prev)`` when ``pool``) at ``(top, left)``;
    ``src`` and ``prev`` are uint8 (H, W), C-contiguous; ``out`` as in
    :func:`gray_area_resize_into`.
    """
    shape = (src.shape[0], src.shape[1], 1)
    gray_area_resize_into(src.reshape(shape), prev.reshape(shape), pool, top, left, ty, tx, out)


@numba.njit(**_JIT)
def plane_crop_into(src, prev, pool, top, left, out):
    """Crop (+ max-pool) of a gray plane, no resize, into each channel of ``out``."""
    shape = (src.shape[0], src.shape[1], 1)
    gray_crop_into(src.reshape(shape), prev.reshape(shape), pool, top, left, out)


# -- colour codes: emulators that hand over their palette's indices (ALE's getScreen) --------


@numba.njit(**_JIT)
def palette_area_resize_into(src, prev, pool, palette, top, left, ty, tx, out):
    """Crop + area resize (+ max-pool) of colour codes, each looked up in a gray palette.

    Equivalent to :func:`plane_area_resize_into` of ``palette[src]`` and ``palette[prev]``,
    bit for bit, in one pass over the codes. The lookups are scalar loads, about half of the
    kernel's time: a pixel whose code did not change between the two frames (most of them) is
    looked up once. The destination rows are summed in one (h, width) float32 block, as in
    :func:`gray_area_resize_into` (bench/bench_ale_worker.py times it against ALE's own gray).

    Args:
        src: uint8 (H, W) colour codes, C-contiguous, the newest frame.
        prev: the frame before it, shaped as ``src`` (ignored unless ``pool``).
        pool: max-pool the two frames' grays.
        palette: uint8 (256,), the gray of each code.
        top: first row of the window.
        left: first column of the window.
        ty: :func:`area_table` of the window's height to ``h``.
        tx: :func:`area_table` of the window's width to ``w``.
        out: uint8 (h, w, C), any strides; every channel gets the gray (a frame stack's ring
            writes a frame's two slots at once: fastretro/runtime/preprocess.py).
    """
    width = tx.dst0.shape[0]
    grays = np.empty(256, np.float32)
    for c in range(256):
        grays[c] = palette[c]
    rows = np.zeros((out.shape[0], width), np.float32)
    line = np.empty(width, np.float32)
    for y in range(ty.dst0.shape[0]):
        a = src[top + y, left : left + width]
        b = prev[top + y, left : left + width]
        if pool:
            for x in range(width):
                v = grays[a[x]]
                if a[x] != b[x]:
                    v = max(v, grays[b[x]])
                line[x] = v
        else:
            for x in range(width):
                line[x] = grays[a[x]]
        _add_weighted(rows[ty.dst0[y]], line, ty.weight0[y])
        if ty.weight1[y] != 0:
            _add_weighted(rows[ty.dst1[y]], line, ty.weight1[y])
    _reduce_rows_gray_into(rows, tx, out)


@numba.njit(**_JIT)
def palette_crop_into(src, prev, pool, palette, top, left, out):
    """Crop (+ max-pool) of colour codes looked up in ``palette``, no resize, as the plane's."""
    shape = (src.shape[0], src.shape[1], 1)
    _gray_crop_into(src.reshape(shape), prev.reshape(shape), pool, palette, top, left, out)
