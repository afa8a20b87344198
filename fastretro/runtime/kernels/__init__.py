"""Numba kernels over preallocated arrays: the preprocessing that runs inside each worker.

Every kernel is a pure function that writes into a caller-owned ``out`` buffer (hence the
``_into`` suffix) and has a plain-numpy twin in ``tests/naive.py`` that the tests compare against.

The kernels' module, and numba with it (~0.3 s, ~40 MB), is imported on first use of one of
these names, not with this package: an ``EnvConfig`` checks its preprocessing through
``fastretro.runtime.preprocess``, and a process that only builds configs (a pool of RGB
observations, a peer's process in bench/bench_size.py) then never loads numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastretro.runtime.kernels.image import (
        AreaTable,
        area_resize_into,
        area_table,
        crop_into,
        gray_area_resize_into,
        gray_crop_into,
        max_into,
        palette_area_resize_into,
        palette_crop_into,
        plane_area_resize_into,
        plane_crop_into,
        rgb_to_gray_into,
    )

__all__ = [
    "AreaTable",
    "area_resize_into",
    "area_table",
    "crop_into",
    "gray_area_resize_into",
    "gray_crop_into",
    "max_into",
    "palette_area_resize_into",
    "palette_crop_into",
    "plane_area_resize_into",
    "plane_crop_into",
    "rgb_to_gray_into",
]


def __getattr__(name: str):
    # PEP 562: the first kernel looked up imports the module; each name then becomes a global
    # of this package, so later lookups are plain attribute reads.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    image = importlib.import_module("fastretro.runtime.kernels.image")
    globals().update({n: getattr(image, n) for n in __all__})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
