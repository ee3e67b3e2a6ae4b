"""Where the installed C++ side of fusedtrain lives: the public headers and the CMake package
(which locates the kernel library), for projects that compile against the kernels; also printed
by ``python -m fusedtrain --include-dir`` and ``--cmake-dir``."""

from __future__ import annotations

from pathlib import Path

from . import _C


def _install_root() -> Path:
    # CMake installs the headers, library and package files beside the compiled module. In an
    # editable install the Python sources live in the source tree and only the compiled files
    # are in site-packages, so the module's location is the one that holds in both cases.
    return Path(_C.__file__).resolve().parent


def _existing(path: Path, what: str) -> str:
    if not path.is_dir():
        raise FileNotFoundError(
            f"fusedtrain's {what} is not at {path}: this installation lacks the C++ files; "
            "reinstall fusedtrain with pip (a wheel or a build from source installs them)")
    return str(path)


def get_include() -> str:
    """The directory to add to the include path for ``#include <fusedtrain/cpu.h>``."""
    return _existing(_install_root() / "include", "include directory")


def get_cmake_dir() -> str:
    """The directory holding ``fusedtrainConfig.cmake``: pass it as ``-Dfusedtrain_DIR=...`` so
    that ``find_package(fusedtrain CONFIG)`` finds the ``fusedtrain::kernels`` target."""
    return _existing(_install_root() / "share" / "cmake" / "fusedtrain", "CMake package directory")
