"""What the ops need to call the CUDA kernels once their arguments are checked (ops/_checks.py
checks both backends): the cupy module, device pointers, CuPy's current stream, and the scratch
buffer of the reductions. The sizes an op hands over are held to the kernels' limits by the
bindings themselves (every _C.cuda_* kernel runs _C.cuda_check_sizes first): the kernels index
in 64 bits, and only the GEMM (2^31 - 1 tiles of 128 x 128: C of 128 TiB) and bias_grad
(2^31 - 1 groups of 32 columns: 256 GiB per row) meet a grid limit, beyond any one GPU's memory
today."""

from __future__ import annotations

import threading
from typing import Any, Optional

from .. import _C

# Per thread: the reductions' scratch buffers by (device, stream) (see workspace).
_workspaces = threading.local()


def require_backend(op: str) -> Any:
    """The cupy module, once it is certain that `op` can run on the GPU."""
    if not _C.cuda_compiled:
        raise RuntimeError(f"{op}: got CuPy arrays, but this fusedtrain was built without CUDA "
                           f"(fusedtrain.info() says why)")
    import cupy

    return cupy


def pointer(array: Optional[Any]) -> int:
    """The device address of a CuPy array's data, 0 for None (an absent optional argument)."""
    return 0 if array is None else array.data.ptr


def stream(cupy: Any) -> int:
    """CuPy's current stream as an integer: the kernels launch there, in order with CuPy's own."""
    return cupy.cuda.get_current_stream().ptr


def workspace(cupy: Any) -> Any:
    """The scratch buffer of the GPU reductions for this thread, device and stream, allocated at
    the first use and kept: one buffer serves consecutive calls on one stream (their kernels run
    in order), and a training step allocates nothing. Threads get their own, as two of them may
    queue work on one stream (the default stream) at the same time."""
    # The module is part of the key: a stand-in module's buffers (tests) never serve CuPy.
    key = (cupy, cupy.cuda.Device().id, stream(cupy))
    buffers = _workspaces.__dict__.setdefault("buffers", {})
    buffer = buffers.get(key)
    if buffer is None:
        buffer = buffers[key] = cupy.empty(_C.cuda_workspace_bytes, dtype=cupy.uint8)
    return buffer
