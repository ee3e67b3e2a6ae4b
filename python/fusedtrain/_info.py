"""fusedtrain.info(): what was built and what this machine offers, with the reason for any
backend that is missing."""

from __future__ import annotations

import importlib.util
import os
import platform
import warnings

from . import _C
from ._version import __version__


class Info(dict):
    """A dict of build and device facts that prints as a short report."""

    def __str__(self) -> str:
        width = max(len(key) for key in self)
        return "\n".join(f"{key.ljust(width)}  {_format(value)}" for key, value in self.items())


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "-"
    return str(value)


# The values FUSEDTRAIN_SIMD understands (csrc/cpu/dispatch.cpp); any other is ignored.
SIMD_NAMES = ("avx512", "avx2", "avx2+fma", "portable")


def _warn_about_simd_setting() -> None:
    """Warns, once at import, when FUSEDTRAIN_SIMD holds a value the kernels ignore."""
    value = os.environ.get("FUSEDTRAIN_SIMD")
    if value and value not in SIMD_NAMES:
        warnings.warn(f"FUSEDTRAIN_SIMD={value!r} is not one of {', '.join(SIMD_NAMES)}; using the widest "
                      f"path this CPU offers ({_C.simd_path()})", RuntimeWarning, stacklevel=2)


def info() -> Info:
    """Version, CPU SIMD path, OpenMP threads, whether CUDA was compiled, whether a GPU was found
    (and why not), and whether CuPy is installed. Queries the CUDA runtime when it was compiled."""
    report = Info()
    report["version"] = __version__
    report["python"] = platform.python_version()
    report["machine"] = platform.machine()
    report["simd"] = _C.simd_path()
    report["simd_available"] = [path for path in ("avx512", "avx2+fma", "portable") if _C.simd_available(path)]
    report["threads"] = _C.get_num_threads()
    report["cuda_compiled"] = bool(_C.cuda_compiled)
    query = _C.cuda_query()
    report["gpu_found"] = query["device_count"] > 0
    if query["device_count"] > 0:
        report["gpus"] = list(query["devices"])
        report["cuda_driver"] = query["driver"]
    else:
        report["gpu_reason"] = query["error"] or "the CUDA runtime reports no device"
    report["cupy"] = importlib.util.find_spec("cupy") is not None
    return report


_warn_about_simd_setting()
