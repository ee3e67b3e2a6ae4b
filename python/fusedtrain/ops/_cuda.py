"""CuPy arrays for the ops that have a CUDA kernel: the same checks as ops/_checks.py, on the
GPU side, and the stream to launch on (CuPy's current stream)."""

from __future__ import annotations

from typing import Any

from .. import _C
from . import _checks as check


def require_backend(op: str) -> Any:
    """The cupy module, once it is certain that `op` can run on the GPU."""
    if not _C.cuda_compiled:
        raise RuntimeError(f"{op}: got CuPy arrays, but this fusedtrain was built without CUDA "
                           f"(fusedtrain.info() says why)")
    import cupy

    return cupy


def array(value: Any, name: str, cupy: Any) -> Any:
    """A C-contiguous float32 CuPy array on the current device, returned as is."""
    if not check.is_cupy(value):
        raise TypeError(f"{name}: expected a cupy.ndarray (the other arguments are on the GPU), "
                        f"got {check.describe(value)}")
    if value.dtype != cupy.float32:
        raise TypeError(f"{name}: expected dtype float32, got {value.dtype}")
    if not value.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array (use cupy.ascontiguousarray({name}))")
    if value.device.id != cupy.cuda.Device().id:
        raise ValueError(f"{name}: is on GPU {value.device.id}, but the current device is "
                         f"{cupy.cuda.Device().id}")
    return value


def output(out: Any, shape: tuple, cupy: Any, name: str = "out") -> Any:
    if out is None:
        return cupy.empty(shape, dtype=cupy.float32)
    result = array(out, name, cupy)
    if tuple(result.shape) != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {tuple(result.shape)}")
    return result


def stream(cupy: Any) -> int:
    return cupy.cuda.get_current_stream().ptr
