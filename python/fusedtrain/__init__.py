"""fusedtrain: train neural networks from Python on hand-written C++ (AVX-512, AVX2, portable; OpenMP) and CUDA
kernels. Importing it loads the compiled module and nothing else: no threads are started and
no GPU is touched until an op or info() asks for one. ``fusedtrain.sklearn`` (which needs
scikit-learn) is imported only on request."""

from . import _C, ops
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
