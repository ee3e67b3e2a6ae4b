"""fusedtrain.info(): what was built and what this machine offers, with the reason for any
backend that is missing."""

from __future__ import annotations

import importlib.util
import platform

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


def info() -> Info:
    """Version, CPU SIMD path, OpenMP threads, whether CUDA was compiled, whether a GPU was found
    (and why not), and whether CuPy is installed. Queries the CUDA runtime when it was compiled."""
    report = Info()
    report["version"] = __version__
    report["python"] = platform.python_version()
    report["machine"] = platform.machine()
    report["simd"] = _C.simd_path()
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
