"""The CPU kernels' thread count (OpenMP; OMP_NUM_THREADS sets the initial value)."""

from __future__ import annotations

from . import _C
from .ops import _checks as check


def set_num_threads(threads: int) -> None:
    """Use ``threads`` OpenMP threads in the CPU kernels from now on."""
    _C.set_num_threads(check.integer(threads, "threads", low=1))


def get_num_threads() -> int:
    """The number of OpenMP threads the CPU kernels use."""
    return _C.get_num_threads()
