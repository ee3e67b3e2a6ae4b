"""fusedtrain: train neural networks from Python on hand-written C++ (AVX-512, AVX2, portable; OpenMP) and CUDA
kernels. Importing it loads the compiled module and nothing else: no threads are started and
no GPU is touched until an op or info() asks for one. ``fusedtrain.sklearn`` (which needs
scikit-learn) is imported only on request."""

import os as _os

# OpenMP's idle threads spin before they sleep (GNU OpenMP: 300,000 rounds by default, about a
# millisecond). Where another library's threads spin too (OpenBLAS keeps NumPy's workers spinning
# for ~0.1 s after each call), the spinners outnumber the cores, and a parallel region then waits
# a scheduler time slice for its last thread: 256K-element relu calls took 8 ms instead of 25 us
# for the 0.1 s after a NumPy matmul, on 2 cores. A short spin (10,000 rounds) keeps the threads
# warm between a training step's kernels and lets them sleep, woken promptly by the scheduler,
# once the kernels pause. Set before libgomp loads (with _C), which reads it once; a value the
# user set, or OMP_WAIT_POLICY, is left alone, and only this process's C environment is changed.
if "GOMP_SPINCOUNT" not in _os.environ and "OMP_WAIT_POLICY" not in _os.environ:
    _os.putenv("GOMP_SPINCOUNT", "10000")

from . import _C, ops  # noqa: E402
from . import (callbacks, data, datasets, initializers, interop, layers, losses, metrics, optimizers,
               regularizers, schedules)
from ._info import Info, info
from ._paths import get_cmake_dir, get_include
from ._threads import get_num_threads, set_num_threads
from ._version import __version__
from .models import Sequential
from .serialization import load

__all__ = [
    "__version__", "ops", "info", "Info", "get_num_threads", "set_num_threads",
    "Sequential", "layers", "optimizers", "losses", "metrics", "callbacks", "data", "schedules",
    "initializers", "regularizers", "interop", "datasets", "load", "get_include", "get_cmake_dir",
]
