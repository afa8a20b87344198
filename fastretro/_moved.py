"""Old import paths of modules that moved in 0.2 (``fastretro.pool`` and friends).

``import fastretro.pool`` still works and gives the module that now lives at
``fastretro.runtime.pool``, with a ``DeprecationWarning``; the aliases go away in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module -> new module
MOVED = {
    "fastretro.pool": "fastretro.runtime.pool",
    "fastretro.worker": "fastretro.runtime.worker",
    "fastretro.shm": "fastretro.runtime.shm",
    "fastretro.spec": "fastretro.runtime.games",
    "fastretro.scenario": "fastretro.runtime.scenario",
    "fastretro.headless": "fastretro.runtime.headless",
    "fastretro.preprocess": "fastretro.runtime.preprocess",
    "fastretro.kernels": "fastretro.runtime.kernels",
    "fastretro.kernels.image": "fastretro.runtime.kernels.image",
    "fastretro.kernels.jerk": "fastretro.agents.jerk_kernels",
    "fastretro.actions": "fastretro.runtime.actions",
    "fastretro.stats": "fastretro.runtime.stats",
    "fastretro.logs": "fastretro.runtime.logs",
    "fastretro.sb3": "fastretro.integrations.sb3",
    "fastretro.distributed": "fastretro.integrations.ray",
    "fastretro.evaluate": "fastretro.contest.evaluate",
    "fastretro.movies": "fastretro.contest.movies",
    "fastretro.render": "fastretro.contest.render",
    "fastretro.cli": "fastretro.tools.cli",
    "fastretro.bench": "fastretro.tools.bench",
    "fastretro.peers": "fastretro.tools.peers",
    "fastretro.profiler": "fastretro.tools.profiler",
    "fastretro.plot": "fastretro.tools.plot",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old module name with the module at its new place."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new}; the old name goes away in fastretro 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the new module has run already


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        # First, so that no other finder (an editable install's) serves a stale old file.
        sys.meta_path.insert(0, _Alias())
