"""Build the Cython extensions; everything else about the package lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("fastretro.runtime._ext.handshake", ["ext/handshake.pyx"], include_dirs=["ext"]),
    Extension("fastretro.runtime._ext.worker_loop", ["ext/worker_loop.pyx"], include_dirs=["ext"]),
    # dlopen and dlinfo live in libdl before glibc 2.34.
    Extension(
        "fastretro.runtime._ext.libretro",
        ["ext/libretro.pyx"],
        include_dirs=["ext"],
        libraries=["dl"],
    ),
]

setup(ext_modules=cythonize(extensions, include_path=["ext"], language_level=3))
