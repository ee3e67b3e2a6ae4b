"""The CPU kernels' thread count (OpenMP; OMP_NUM_THREADS sets the initial value). It is one
count for the whole process: kernels called from any Python thread use it."""

from __future__ import annotations

from . import _C
from .ops import _checks as check

# A bound far above any machine's cores that keeps a typo (2**40) from asking OpenMP for more
# threads than the process can start.
MAX_THREADS = 1024


def set_num_threads(threads: int) -> None:
    """Use ``threads`` OpenMP threads (1 to 1024) in the CPU kernels from now on, whichever
    Python thread calls them."""
    _C.set_num_threads(check.integer(threads, "threads", low=1, high=MAX_THREADS))


def get_num_threads() -> int:
    """The number of OpenMP threads the CPU kernels use."""
    return _C.get_num_threads()
