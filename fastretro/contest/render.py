"""Frames to pictures: one RGB image from a batch of observations, in plain numpy."""

from __future__ import annotations

import math

import numpy as np

from fastretro.errors import InvalidArgumentError


def to_rgb(frames: np.ndarray, frame_channels: int | None = None) -> np.ndarray:
    """View a batch of observations (single frames or frame stacks) as RGB frames.

    Args:
        frames: uint8 array of shape ``(N, H, W, C)``: one frame, or a stack of frames
            concatenated on the channel axis, oldest first.
        frame_channels: channels per frame, 3 (RGB) or 1 (gray). ``None`` guesses from the
            shape: ``C == 3`` is one RGB frame, any other ``C`` a stack of gray frames. The
            guess is wrong for a stack of three gray frames, or of RGB frames: say it where
            the producer knows (``SB3VecEnv`` reads it from the pool's options).

    Returns:
        uint8 array of shape ``(N, H, W, 3)`` holding the newest frame: ``frames`` itself where
        it is one RGB frame (no copy: it aliases the input), otherwise a new array; a gray frame
        is repeated on the three channels.

    Raises:
        InvalidArgumentError: if ``frames`` is not a 4-d uint8 array, or ``frame_channels`` is
            not None, 1 or 3, or does not divide ``C``.
    """
    frames = _check_frames(frames)
    channels = frames.shape[-1]
    if frame_channels is None:
        frame_channels = 3 if channels == 3 else 1
    elif frame_channels not in (1, 3) or isinstance(frame_channels, bool):
        raise InvalidArgumentError(
            f"Expected frame_channels to be None, 1 or 3, got {frame_channels!r}"
        )
    if channels % frame_channels:
        raise InvalidArgumentError(
            f"Expected a stack of {frame_channels}-channel frames, got {channels} channels"
        )
    if frame_channels == 3:
        return frames if channels == 3 else frames[..., -3:].copy()
    # The newest frame is the one the agent acts on; gray on all three channels keeps every
    # picture the same (H, W, 3) shape.
    return np.repeat(frames[..., -1:], 3, axis=-1)


def tile_frames(
    frames: np.ndarray, ncols: int | None = None, frame_channels: int | None = None
) -> np.ndarray:
    """Tile a batch of frames into one RGB image, row by row.

    The default grid is stable-baselines3's ``tile_images``: ``ceil(sqrt(N))`` rows of
    ``ceil(N / rows)`` frames, so the result is identical to SB3's for RGB input. Cells past
    the last frame are black.

    Args:
        frames: uint8 array of shape ``(N, H, W, C)``, ``N >= 1``; each observation shows its
            newest frame in RGB, as in :func:`to_rgb`.
        ncols: frames per row; ``None`` for SB3's near-square grid.
        frame_channels: channels per frame (1 or 3); ``None`` guesses, see :func:`to_rgb`.

    Returns:
        A new uint8 array of shape ``(rows * H, ncols * W, 3)``; it does not alias ``frames``.

    Raises:
        InvalidArgumentError: if ``frames`` is not a non-empty 4-d uint8 array, ``ncols`` is
            not an int >= 1, or ``frame_channels`` does not fit (see :func:`to_rgb`).
    """
    frames = to_rgb(frames, frame_channels)
    n, height, width, _ = frames.shape
    if ncols is None:
        nrows = math.ceil(math.sqrt(n))
        ncols = math.ceil(n / nrows)
    else:
        if isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1:
            raise InvalidArgumentError(f"Expected ncols to be None or an int >= 1, got {ncols!r}")
        ncols = int(ncols)
        nrows = math.ceil(n / ncols)
    grid = np.zeros((nrows * ncols, height, width, 3), dtype=np.uint8)
    grid[:n] = frames
    # (rows, cols, H, W, 3) -> (rows, H, cols, W, 3): each output row of pixels then runs
    # through the frames of one grid row in order.
    out = grid.reshape(nrows, ncols, height, width, 3).transpose(0, 2, 1, 3, 4)
    return out.reshape(nrows * height, ncols * width, 3)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        raise InvalidArgumentError(
            "Expected frames to be a uint8 array of shape (N, H, W, C), got "
            f"{type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[0] == 0 or not frames.shape[3]:
        raise InvalidArgumentError(
            "Expected frames to be a uint8 array of shape (N, H, W, C) with N >= 1 and C >= 1, "
            f"got a {frames.dtype} array of shape {frames.shape}"
        )
    return frames
