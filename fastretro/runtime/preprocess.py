"""Observation preprocessing inside the worker: crop, gray, resize, max-pool, frame stack.

A worker turns the emulator's screen into its observation with one fused kernel call
(``fastretro.runtime.kernels``) that writes straight into shared memory: the full RGB frame never
crosses a process boundary.

The frame stack is a mirrored ring in shared memory, so stacking costs one frame write, not a
shift of the whole stack. Each env's row holds ``2k`` frame slots on the channel axis; at step
``t`` (slot ``s = t mod k``) the new frame goes to slots ``s`` and ``s + k``, and the stack is
the contiguous run of slots ``s + 1 .. s + k``, oldest first: a view. Every env of a pool steps
together, so one slot index (kept by the parent, read by the workers) serves all rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastretro.errors import InvalidArgumentError
from fastretro.runtime import kernels


@dataclass(frozen=True)
class Preprocessing:
    """What a worker does to each frame (all off: the raw RGB screen).

    Attributes:
        grayscale: ITU-R 601 luma, as ``cv2.cvtColor(RGB2GRAY)``; 1 channel.
        resize: ``(height, width)`` by area averaging, as ``cv2.resize(INTER_AREA)``;
            shrinking only.
        crop: pixels cut from the ``(top, bottom, left, right)`` edges before resizing.
        max_pool: the pixel-wise max of the step's last two frames.
        frame_stack: the last ``k`` frames concatenated on the channel axis, newest last.
        channels_first: observations are (channels, h, w), as PyTorch's convolutions (and SB3's
            CnnPolicy without ``VecTransposeImage``) take them; default (h, w, channels).
    """

    grayscale: bool = False
    resize: tuple[int, int] | None = None
    crop: tuple[int, int, int, int] = (0, 0, 0, 0)
    max_pool: bool = False
    frame_stack: int = 1
    channels_first: bool = False

    @classmethod
    def from_options(
        cls,
        grayscale: bool,
        resize: Sequence[int] | None,
        crop: Sequence[int] | None,
        max_pool: bool,
        frame_stack: int,
        channels_first: bool = False,
    ) -> Preprocessing:
        """Validate the pool's options (the parts that do not depend on the screen size)."""
        if resize is not None:
            if not _ints(resize, 2) or min(resize) < 1:
                raise InvalidArgumentError(
                    f"Expected resize to be (height, width) with both >= 1, got {resize!r}"
                )
            resize = (int(resize[0]), int(resize[1]))
        if crop is None:
            crop = (0, 0, 0, 0)
        if not _ints(crop, 4) or min(crop) < 0:
            raise InvalidArgumentError(
                f"Expected crop to be (top, bottom, left, right) pixel counts >= 0, got {crop!r}"
            )
        if isinstance(frame_stack, bool) or not isinstance(frame_stack, (int, np.integer)):
            raise InvalidArgumentError(
                f"Expected frame_stack to be an int, got {type(frame_stack).__name__}"
            )
        if frame_stack < 1:
            raise InvalidArgumentError(f"Expected frame_stack >= 1, got {frame_stack}")
        return cls(
            bool(grayscale),
            resize,
            tuple(int(c) for c in crop),
            bool(max_pool),
            int(frame_stack),
            bool(channels_first),
        )

    def frame_shape(self, screen_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Shape of one preprocessed frame, (h, w, channels), from the screen's (H, W, 3).

        Raises:
            InvalidArgumentError: the crop leaves nothing, or resize would enlarge.
        """
        height, width = screen_shape[:2]
        top, bottom, left, right = self.crop
        h, w = height - top - bottom, width - left - right
        if h < 1 or w < 1:
            raise InvalidArgumentError(
                f"crop={self.crop} leaves no pixels of the {height}x{width} screen"
            )
        if self.resize is not None:
            if self.resize[0] > h or self.resize[1] > w:
                raise InvalidArgumentError(
                    f"Expected resize to shrink the {h}x{w} (cropped) screen, got "
                    f"{self.resize}: area averaging does not enlarge"
                )
            h, w = self.resize
        return h, w, 1 if self.grayscale else 3

    def observation_shape(self, screen_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Shape of one env's observation: the frame with ``frame_stack`` times the channels."""
        return self._layout(screen_shape, self.frame_stack)

    def buffer_shape(self, screen_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """Shape of one env's row in shared memory: the mirrored ring holds ``2k`` frames."""
        return self._layout(screen_shape, 2 * self.frame_stack if self.frame_stack > 1 else 1)

    def _layout(self, screen_shape: tuple[int, ...], frames: int) -> tuple[int, int, int]:
        h, w, c = self.frame_shape(screen_shape)
        return (c * frames, h, w) if self.channels_first else (h, w, c * frames)


def stack_views(
    obs: np.ndarray, frame_stack: int, channels: int, channels_first: bool = False
) -> list[np.ndarray]:
    """For each ring slot ``s``, the view of ``obs`` (the ring buffer) that is the stack.

    ``obs`` is (..., h, w, 2k * C), or (..., 2k * C, h, w) with ``channels_first``; each view
    holds k * C channels, oldest frame first (channels-first, each env's view is contiguous).
    With ``frame_stack == 1`` the buffer is the observation.
    """
    if frame_stack == 1:
        return [obs]
    k, c = frame_stack, channels
    if channels_first:
        return [obs[..., (s + 1) * c : (s + 1 + k) * c, :, :] for s in range(k)]
    return [obs[..., (s + 1) * c : (s + 1 + k) * c] for s in range(k)]


def copy_into(src: np.ndarray, out: np.ndarray) -> None:
    """Copy ``src`` into the C-contiguous ``out``; fast also for a frame stack (a strided view).

    A stack is a channel slice of the wider ring: numpy copies it a few bytes at a time; viewed
    as one opaque element per pixel it copies about ten times faster (8 x 84x84x4 stacks).
    """
    if not src.flags.c_contiguous and src.strides[-1] == src.itemsize:
        pixel = np.dtype((np.void, src.shape[-1] * src.itemsize))
        np.copyto(out.view(pixel), src.view(pixel))
    else:
        np.copyto(out, src)


class FrameWriter:
    """Writes one env's observation row from the emulator's screen (runs in the worker).

    Args:
        prep: the preprocessing options.
        screen_shape: the emulator screen's (H, W, 3), before the integration's crop.
        window: the integration's crop of the screen, ``(top, left, height, width)``.
        rotate: function applied to the (cropped) screen for games whose integration rotates
            it, or ``None``.
        row: this env's row of the shared observation buffer (:meth:`buffer_shape`).
        slot: the shared one-element array holding the current ring slot.
        palette: uint8 (256,) or ``None``: the gray of each colour code, when the one-channel
            pictures written are colour codes (ALE's ``screen_codes``), not gray.
        picture: the emulator's function whose pictures are written (the worker's loop calls
            it); ``None`` where the caller hands the pictures over itself.
    """

    def __init__(
        self, prep, screen_shape, window, rotate, row: np.ndarray, slot, palette=None, picture=None
    ) -> None:
        self.prep = prep
        self.screen_shape = tuple(screen_shape)
        self.rotate = rotate
        self.palette = palette
        self.picture = picture
        wtop, wleft, wh, ww = window
        top, bottom, left, right = prep.crop
        if rotate is None:
            base = (wh, ww)
            self.top, self.left = wtop + top, wleft + left
        else:
            base = rotate(np.zeros((wh, ww, 3), np.uint8)).shape[:2]
            self.top, self.left = top, left
        self.window = window
        self.height, self.width = base[0] - top - bottom, base[1] - left - right
        h, w, c = prep.frame_shape((*base, 3))
        self.channels = c
        self.k = prep.frame_stack
        self.row = row
        self.slot = slot
        if prep.resize is not None:
            self.ty = kernels.area_table(self.height, h)
            self.tx = kernels.area_table(self.width, w)
        # Each ring slot as an (h, w, C) view, whatever the layout: kernels write any strides.
        if prep.channels_first:
            self._frames = [
                np.moveaxis(row[j * c : (j + 1) * c], 0, -1) for j in range(row.shape[0] // c)
            ]
        else:
            self._frames = [row[..., j * c : (j + 1) * c] for j in range(row.shape[-1] // c)]
        # Channels last, a gray frame's two ring slots, s and s + k, as one (h, w, 2) view: the
        # gray kernels write every channel of their output, so a step writes both in one pass
        # instead of copying one slot into the other afterwards, a strided copy of h x w single
        # bytes (~5 us at 84x84). Channels first, each slot is contiguous and its copy cheap.
        self._slot_pairs = None
        if c == 1 and self.k > 1 and not prep.channels_first:
            self._slot_pairs = [row[..., s :: self.k] for s in range(self.k)]

    def _source(self, screen: np.ndarray) -> np.ndarray:
        if self.rotate is None:
            return screen
        top, left, h, w = self.window
        return np.ascontiguousarray(self.rotate(screen[top : top + h, left : left + w]))

    def write_frame(self, screen: np.ndarray, prev: np.ndarray | None, out: np.ndarray) -> None:
        """Preprocess ``screen`` (max-pooled with ``prev`` when given) into ``out`` (h, w, C).

        ``screen`` is RGB (H, W, 3), or, with ``grayscale``, may be the emulator's own gray
        picture (H, W) (ALE's, whose values are this luma of its RGB), or its colour codes
        (H, W) when the writer has a ``palette``.
        """
        src = self._source(screen)
        pool = prev is not None
        other = self._source(prev) if pool else src
        top, left = self.top, self.left
        if src.ndim == 2 and self.palette is not None:
            palette = self.palette
            if self.prep.resize is not None:
                kernels.palette_area_resize_into(
                    src, other, pool, palette, top, left, self.ty, self.tx, out
                )
            else:
                kernels.palette_crop_into(src, other, pool, palette, top, left, out)
        elif src.ndim == 2:
            if self.prep.resize is not None:
                kernels.plane_area_resize_into(src, other, pool, top, left, self.ty, self.tx, out)
            else:
                kernels.plane_crop_into(src, other, pool, top, left, out)
        elif self.prep.grayscale and self.prep.resize is not None:
            kernels.gray_area_resize_into(src, other, pool, top, left, self.ty, self.tx, out)
        elif self.prep.grayscale:
            kernels.gray_crop_into(src, other, pool, top, left, out)
        elif self.prep.resize is not None:
            kernels.area_resize_into(src, other, pool, top, left, self.ty, self.tx, out)
        elif pool:
            window = (slice(top, top + self.height), slice(left, left + self.width))
            np.maximum(src[window], other[window], out=out)
        elif screen is not out:  # else the emulator wrote it there (direct_frame)
            np.copyto(out, src[(slice(top, top + self.height), slice(left, left + self.width))])

    def direct_frame(self) -> np.ndarray | None:
        """The observation row an emulator may write its RGB picture into itself, or ``None``.

        Only where the observation is the whole picture as it is (RGB, no crop, rotation,
        resize or max-pooling, one frame, channels last): the worker then has the emulator
        write each picture there (``screen_into``) instead of copying it, which saves a
        picture's copy per step and keeps one buffer per env out of the cache (``fastretro
        bench``'s rgb-fs1 rows measure it).
        """
        prep, out = self.prep, self._frames[0]
        if (
            self.rotate is not None
            or prep.grayscale
            or prep.resize is not None
            or prep.max_pool
            or self.k != 1
            or (self.top, self.left) != (0, 0)
            or out.shape != self.screen_shape
            or not out.flags.c_contiguous
        ):
            return None
        return out

    def __call__(self, screen: np.ndarray, prev: np.ndarray | None, fill: bool) -> None:
        """Write the newest frame; ``fill`` (after a reset) repeats it through the whole stack."""
        if self.k == 1:
            self.write_frame(screen, prev, self._frames[0])
            return
        s = int(self.slot[0])
        if self._slot_pairs is not None and not fill:
            self.write_frame(screen, prev, self._slot_pairs[s])
            return
        first = self._frames[s]
        self.write_frame(screen, prev, first)
        if fill:
            for j, frame in enumerate(self._frames):
                if j != s:
                    np.copyto(frame, first)
        else:
            np.copyto(self._frames[s + self.k], first)

    def stack(self) -> np.ndarray:
        """This env's current observation (a view of its row)."""
        views = stack_views(self.row, self.k, self.channels, self.prep.channels_first)
        return views[int(self.slot[0]) if self.k > 1 else 0]

    def warm_up(self, screen: np.ndarray, gray: np.ndarray | None = None) -> None:
        """Run every kernel this writer uses once, so no compilation happens during a step.

        ``gray``: the emulator's one-channel picture (gray, or colour codes with a
        ``palette``), when observations are made from it. Writes into the row, which the first
        reset overwrites.
        """
        for picture in (screen, gray) if gray is not None else (screen,):
            self.write_frame(picture, None, self._frames[0])
            if self.prep.max_pool:
                self.write_frame(picture, picture, self._frames[0])


def _ints(value, n: int) -> bool:
    return (
        isinstance(value, (tuple, list))
        and len(value) == n
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    )
