"""Shared buffers: one segment per pool, laid out as named arrays, with a single owner.

Ownership: the parent creates the segment, is the only process registered with Python's
resource tracker for it, and unlinks it in ``close()``. Workers attach by name *without*
registering: on Python < 3.13 every ``SharedMemory(name)`` registers the segment with the
(shared) resource tracker, whose bookkeeping is a set, so a worker's attach-and-unregister would
also erase the parent's registration. If the parent dies without closing, the resource tracker
unlinks the segment once the last process holding it exits; ``fastretro cleanup`` removes
segments whose owner process is gone.
"""

from __future__ import annotations

import mmap
import os
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

#: Every segment fastretro creates is named ``fastretro_<owner pid>_<token>``.
PREFIX = "fastretro_"
_ALIGN = 64  # one cache line: no two fields share a line, and SIMD loads stay aligned


@dataclass(frozen=True)
class Field:
    """One array in the segment."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int = 0

    @property
    def nbytes(self) -> int:
        """Size of the array in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Layout:
    """Where each named array lives in the segment. Picklable, so it travels to workers."""

    fields: tuple[Field, ...]
    size: int

    @classmethod
    def build(cls, specs: list[tuple[str, tuple[int, ...], str]]) -> Layout:
        """Lay out (name, shape, dtype) arrays one after another, each cache-line aligned."""
        fields, offset = [], 0
        for name, shape, dtype in specs:
            f = Field(name, tuple(int(s) for s in shape), np.dtype(dtype).str, offset)
            fields.append(f)
            offset += -(-f.nbytes // _ALIGN) * _ALIGN
        return cls(tuple(fields), max(offset, _ALIGN))

    def views(self, buf) -> dict[str, np.ndarray]:
        """Numpy views of every field over ``buf``; they alias the shared memory."""
        return {
            f.name: np.ndarray(f.shape, np.dtype(f.dtype), buffer=buf, offset=f.offset)
            for f in self.fields
        }


class SharedBuffers:
    """A segment and its named views. Create with :meth:`create` (owner) or :meth:`attach`."""

    def __init__(self, layout: Layout, name: str, segment) -> None:
        self.layout = layout
        self.name = name
        # Only the owner keeps the SharedMemory object: it is what unlinks and unregisters.
        self._segment = segment
        self._mmap = _map(name, layout.size)
        self.arrays = layout.views(self._mmap)

    @property
    def owner(self) -> bool:
        """True in the process that created (and will unlink) the segment."""
        return self._segment is not None

    @classmethod
    def create(cls, layout: Layout) -> SharedBuffers:
        """Create a new segment for ``layout``; the caller owns it."""
        name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        segment = shared_memory.SharedMemory(name=name, create=True, size=layout.size)
        # Views come from our own mapping (below), so SharedMemory's can go now, while nothing
        # is exported from it: closing a mapping with live numpy views raises BufferError.
        segment.close()
        return cls(layout, name, segment)

    @classmethod
    def attach(cls, layout: Layout, name: str) -> SharedBuffers:
        """Map an existing segment without taking ownership."""
        return cls(layout, name, None)

    def close(self) -> None:
        """Drop the views and unmap; the owner also unlinks the segment. Idempotent."""
        if self._mmap is None:
            return
        self.arrays = {}
        mm, self._mmap = self._mmap, None
        try:
            mm.close()
        except BufferError:
            # A caller still holds a view (e.g. the last observation): the mapping stays valid
            # until that view is garbage-collected; the name is unlinked below all the same.
            pass
        if self._segment is not None:
            try:
                self._segment.unlink()
            except FileNotFoundError:
                pass


def _map(name: str, size: int) -> mmap.mmap:
    # Map /dev/shm/<name> directly: see the module docstring for why not SharedMemory(name).
    fd = os.open(f"/dev/shm/{name}", os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def list_segments() -> list[str]:
    """Names of fastretro segments present in /dev/shm."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def _owner_alive(name: str) -> bool:
    try:
        pid = int(name[len(PREFIX) :].split("_", 1)[0])
    except ValueError:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_orphans(skipped: list[str] | None = None) -> list[str]:
    """Unlink every fastretro segment whose owner process no longer exists; return their names.

    A segment this user may not unlink (another user's, in sticky ``/dev/shm``) is left in
    place and the rest are still removed; its name is appended to ``skipped`` when given.
    """
    removed = []
    for name in list_segments():
        if not _owner_alive(name):
            try:
                os.unlink(f"/dev/shm/{name}")
                removed.append(name)
            except FileNotFoundError:
                pass  # removed meanwhile (by its resource tracker, or another cleanup)
            except PermissionError:
                if skipped is not None:
                    skipped.append(name)
    return removed
