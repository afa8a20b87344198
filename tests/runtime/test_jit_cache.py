"""fastretro's compiled kernels are cached outside the package, so no install leaves them behind.

numba's default cache sits beside the sources; pip's uninstall does not know those files, and a
left-over ``site-packages/fastretro`` of them shadowed an editable install (README's Quickstart,
command 1 then 2).
"""

import glob
import os
import subprocess
import sys
import time

import fastretro

PACKAGE = os.path.dirname(fastretro.__file__)
COMPILE = (
    "import numpy as np\n"
    "from fastretro.runtime import kernels\n"
    "kernels.rgb_to_gray_into(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))\n"
)


def _compile(env_changes):
    env = {**os.environ, **env_changes}
    env.pop("NUMBA_DISABLE_JIT", None)
    subprocess.run([sys.executable, "-c", COMPILE], check=True, env=env, timeout=240)


def _package_cache_files_since(t):
    files = glob.glob(os.path.join(PACKAGE, "**", "*.nb[ic]"), recursive=True)
    return [f for f in files if os.path.getmtime(f) >= t]


def test_kernels_cache_in_fastretros_cache_dir_not_beside_the_sources(tmp_path):
    start = time.time() - 1
    _compile({"FASTRETRO_CACHE_DIR": str(tmp_path)})
    assert glob.glob(str(tmp_path / "kernels_*" / "image.rgb_to_gray_into-*.nbi"))
    assert _package_cache_files_since(start) == []


def test_the_cache_dir_follows_xdg_cache_home(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "FASTRETRO_CACHE_DIR": ""}
    _compile(env)
    assert glob.glob(str(tmp_path / "fastretro" / "numba" / "kernels_*" / "*.nbi"))
