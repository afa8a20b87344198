"""Build the Cython extensions; everything else about the package lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("fastretro.runtime._ext.handshake", ["ext/handshake.pyx"], include_dirs=["ext"]),
    Extension("fastretro.runtime._ext.worker_loop", ["ext/worker_loop.pyx"], include_dirs=["ext"]),
]

setup(ext_modules=cythonize(extensions, include_path=["ext"], language_level=3))
