"""Lean workers: what the pool does once before forking, and what a worker then keeps shared.

(runtime/workers.py prepare_parent, runtime/worker.py prepare_process; issue 37.)
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import GAME

from fastretro.runtime.worker import prepare_process

# One subprocess per case: numba's dispatchers keep every signature compiled in a process, so
# a case must start from none.
_SIGNATURES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from fastretro import EnvConfig
    from fastretro.runtime.kernels import image
    from fastretro.runtime.workers import compile_kernels, prepare_parent

    def signatures():
        return sorted(
            f"{name}{sig}" for name in dir(image)
            for sig in getattr(getattr(image, name), "signatures", ())
        )

    options, backend, screen = json.loads(sys.argv[1])
    config = EnvConfig(game="Airstriker-Genesis-v0", frameskip=4, **options)
    prepare_parent(config, backend)
    before = signatures()
    # What the pool compiles once the workers have told it their screen (pool.py).
    prep = config.preprocessing
    row = np.zeros((2, *prep.buffer_shape(tuple(screen))), np.uint8)[0]
    compile_kernels(prep, tuple(screen), row, backend == "ale")
    print(json.dumps([before, signatures()]))
    """
)

CASES = [
    dict(grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4),
    dict(grayscale=True, resize=(84, 84), frame_stack=4, channels_first=True),
    dict(resize=(64, 64)),
    dict(grayscale=True, crop=(8, 8, 0, 0)),
    dict(grayscale=True, frame_stack=4),  # no resize: the ring's frames are strided views
    dict(grayscale=True, frame_stack=1, max_pool=True),
]


@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(map(str, o)))
@pytest.mark.parametrize(
    "backend, screen", [("stable-retro", (224, 320, 3)), ("ale", (210, 160, 3))]
)
def test_the_kernels_compiled_before_fork_are_those_the_workers_call(options, backend, screen):
    import json

    arg = json.dumps([options, backend, screen])
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    out = subprocess.run(
        [sys.executable, "-c", _SIGNATURES, arg],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    before, after = json.loads(out.stdout.splitlines()[-1])
    assert before, "prepare_parent compiled nothing"
    assert after == before


_POOL = textwrap.dedent(
    """
    import sys
    import numpy as np
    from fastretro import EnvConfig, VecRetroEnv
    from fastretro.runtime.workers import prepare_parent

    config = EnvConfig(
        game=sys.argv[2], frameskip=4, grayscale=True, resize=(84, 84), max_pool=True, frame_stack=4
    )
    prepare_parent(config, "stable-retro")
    print("POOL", flush=True)
    with VecRetroEnv(config, 2, start_method=sys.argv[1]) as env:
        env.reset(seed=0)
        env.step(np.zeros((2, 12), np.uint8))
    """
)


def _kernels_loaded_by_workers(method: str) -> int:
    """How many kernels the workers of a 2-env pool loaded from numba's cache."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env["NUMBA_DEBUG_CACHE"] = "1"  # numba prints "[cache] data loaded from ..." per load
    out = subprocess.run(
        [sys.executable, "-c", _POOL, method, GAME],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split("POOL", 1)[1].count("data loaded")


def test_forked_workers_find_the_kernels_compiled():
    # Each worker loaded them from the cache before: ~0.15 s and ~20 MB of LLVM apiece.
    assert _kernels_loaded_by_workers("fork") == 0


def test_spawned_workers_load_the_kernels_from_the_cache():
    # What the fork test's zero is measured against: workers that start afresh load them.
    assert _kernels_loaded_by_workers("spawn") >= 2


def _private_mb() -> float:
    with open("/proc/self/smaps_rollup") as f:
        fields = dict(line.split()[:2] for line in f if line.split()[0].startswith("Private_"))
    return sum(int(v) for v in fields.values()) / 1024


def _copied_by_a_collection(freeze: bool, conn) -> None:
    if freeze:
        prepare_process()
    before = _private_mb()
    gc.collect()
    conn.send(_private_mb() - before)


def _copied_mb(freeze: bool) -> float:
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_copied_by_a_collection, args=(freeze, child))
    proc.start()
    try:
        assert parent.poll(60)
        return parent.recv()
    finally:
        proc.join(10)


def test_a_worker_collecting_garbage_keeps_the_pools_pages_shared():
    # A full collection writes into every object it examines: without prepare_process, the
    # forked child copies every page of the test process that holds a Python object.
    shared = _copied_mb(freeze=True)
    assert shared < 4.0
    assert _copied_mb(freeze=False) > shared


def test_building_a_config_does_not_import_numba():
    # An EnvConfig checks its preprocessing; the kernels (and numba) load on first use only.
    code = (
        "import sys\n"
        "from fastretro import EnvConfig\n"
        "EnvConfig(game='Airstriker-Genesis-v0', grayscale=True, resize=(84, 84))\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "from fastretro.runtime import kernels\n"
        "assert 'numba' not in sys.modules, 'numba imported'\n"
        "kernels.area_table(8, 4)\n"
        "assert 'numba' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_an_unknown_kernel_name_raises_attribute_error():
    from fastretro.runtime import kernels

    with pytest.raises(AttributeError, match="no attribute 'nope_into'"):
        kernels.nope_into  # noqa: B018


@pytest.mark.parametrize("backend", ["stable-retro", "libretro"])
def test_the_pool_reads_the_genesis_core_and_imports_the_backend_before_forking(backend):
    # Each Genesis worker would otherwise hash the core and read its symbols itself.
    from fastretro import EnvConfig
    from fastretro.runtime import headless
    from fastretro.runtime.workers import BACKEND_IMPORTS, prepare_parent

    headless._file_sha256.cache_clear()
    prepare_parent(EnvConfig(game=GAME), backend)
    assert headless._file_sha256.cache_info().currsize == 1
    assert all(name in sys.modules for name in BACKEND_IMPORTS[backend])
