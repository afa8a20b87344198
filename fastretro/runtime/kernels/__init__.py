"""Numba kernels over preallocated arrays: the preprocessing that runs inside each worker.

Every kernel is a pure function that writes into a caller-owned ``out`` buffer (hence the
``_into`` suffix) and has a plain-numpy twin in ``tests/naive.py`` that the tests compare against.
"""

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
