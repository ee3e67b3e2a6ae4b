"""Where a model's arrays live: the one seam between the training code and an array library.

A Backend owns the arrays of one model: it creates them (``xp``, the array module: NumPy on the
CPU, CuPy on a GPU), moves data to and from the host, gathers batches, and keeps the running
sums of the loss and the metrics. Layers, losses, optimizers and the training loop are written
once over ``xp`` and call the same ``fusedtrain.ops``; they never name a device.

``resolve(device)`` turns a model's ``device`` argument into a Backend:
- "cpu": the CPU;
- "cuda" / "cuda:N": GPU 0 / GPU N, or RuntimeError saying what is missing (a build without
  CUDA, no driver, no device, no GPU N, no CuPy);
- "auto": the GPU 0 where it is usable, otherwise the CPU, with one line on stderr (once per
  process) saying why."""

from __future__ import annotations

import sys
from typing import Any, Optional, Tuple

import numpy as np

from .. import _C
from ..ops import _checks as check
from .cpu import CpuBackend

DEVICES = ("auto", "cpu", "cuda")

# The reason "auto" chose the CPU is printed once per process, not once per model.
_auto_reported = False


def array_module(array: Any) -> Any:
    """numpy for NumPy arrays, cupy for CuPy arrays: the module whose functions apply to `array`."""
    if isinstance(array, np.ndarray) or not check.is_cupy(array):
        return np
    import cupy

    return cupy


def parse(device: Any) -> Tuple[str, int]:
    """("cpu" | "cuda" | "auto", GPU index) of a device argument; ValueError for anything else."""
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        if kind in DEVICES and not index and ":" not in device:
            return kind, 0
        if kind == "cuda" and index.isdigit():
            return kind, int(index)
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got {device!r}")


def cuda_problem(index: int) -> Optional[str]:
    """Why GPU `index` cannot train a model, or None when it can."""
    if not _C.cuda_compiled:
        return ("this fusedtrain was built without CUDA (no nvcc was found at build time; reinstall with "
                "the CUDA toolkit on PATH)")
    query = _C.cuda_query()
    count = int(query["device_count"])
    if count == 0:
        error = str(query["error"] or "the CUDA runtime reports no device")
        if "Driver" in error or "driver" in error:
            return f"no usable NVIDIA driver ({error})"
        return f"no GPU found ({error})"
    if index >= count:
        return f"there is no GPU {index}: the CUDA runtime sees {count} GPU(s), numbered from 0"
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        return f"CuPy is not installed ({error}); pip install 'fusedtrain[cuda]'"
    return None


def resolve(device: Any, announce: bool = True) -> Any:
    """The Backend for a model's ``device`` argument (see the module's documentation).
    ``announce=False`` leaves out the line on stderr (the CLI puts the reason in its report)."""
    global _auto_reported
    kind, index = parse(device)
    if kind == "cpu":
        return CpuBackend()
    if ":" not in device and _C.cuda_compiled:
        # Data-parallel training (fusedtrain.distributed): one GPU per rank of a machine.
        from .. import distributed

        count = int(_C.cuda_query()["device_count"])
        if count and distributed.launched_size() > 1:
            index = distributed.world().local_rank % count
    problem = cuda_problem(index)
    if problem is None:
        from .cuda import CudaBackend

        return CudaBackend(index)
    if kind == "cuda":
        raise RuntimeError(f"device={device!r}: cannot train on the GPU: {problem}. Use device='cpu' (or "
                           f"'auto', which falls back to the CPU)")
    if announce and not _auto_reported:
        _auto_reported = True
        print(f"fusedtrain: device='auto' trains on the CPU: {problem}", file=sys.stderr, flush=True)
    return CpuBackend(reason=problem)


__all__ = ["CpuBackend", "DEVICES", "array_module", "cuda_problem", "parse", "resolve"]
