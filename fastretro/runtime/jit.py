"""numba's options for fastretro's kernels, and where their compiled cache lives.

``JIT`` is what every kernel module passes to ``numba.njit``. Importing this module also points
numba's on-disk cache of fastretro's own kernels at a folder outside the package
(``$FASTRETRO_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastretro/numba``, else
``~/.cache/fastretro/numba``). numba's default writes ``__pycache__/*.nbi`` files beside the
installed sources, which pip's uninstall does not know of: replacing ``pip install .`` with
``pip install -e .`` in one venv left a ``site-packages/fastretro`` folder of cache files that
Python then took for the package (the README's Quickstart, commands 1 then 2). Other code's
numba caches are left where numba puts them.
"""

from __future__ import annotations

import os

from numba.core import caching

#: numba.njit's options for every kernel. No fastmath: LLVM would reassociate float sums and
#: change results by a gray level across machines (the kernels are memory-bound anyway).
JIT = {"cache": True, "nogil": True}

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cache_dir() -> str:
    """The folder fastretro's compiled kernels are cached in."""
    if os.environ.get("FASTRETRO_CACHE_DIR"):
        return os.environ["FASTRETRO_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastretro", "numba")


class _FastretroCacheLocator(caching.UserProvidedCacheLocator):
    """numba's cache of a function defined in fastretro's own sources, under :func:`cache_dir`.

    Keyed by the source folder (numba's own subpath), so that an installed copy and a source
    tree never share entries; the source files' stamps keep entries fresh.
    """

    def __init__(self, py_func, py_file):
        super().__init__(py_func, py_file)
        self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if not os.path.abspath(py_file).startswith(_PACKAGE + os.sep):
            return None  # not fastretro's: numba's next locator decides
        # UserProvidedCacheLocator.from_function asks for NUMBA_CACHE_DIR: skip to its parent's.
        return super(caching.UserProvidedCacheLocator, cls).from_function(py_func, py_file)


def _install() -> None:
    locators = getattr(caching.CacheImpl, "_locator_classes", None)
    if isinstance(locators, list) and _FastretroCacheLocator not in locators:
        locators.insert(0, _FastretroCacheLocator)


_install()
