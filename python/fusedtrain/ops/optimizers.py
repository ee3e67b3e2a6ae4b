"""Fused optimizer steps: one in-place pass over a parameter buffer, its gradient and the
optimizer state (float32 arrays of one shape), and global-norm gradient clipping. NumPy arrays
run on the CPU; CuPy arrays on the GPU, each step as one kernel launch on CuPy's current stream
(clip_grad_norm returns the norm as a Python float, so it waits for that stream)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Union

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda


# The kernels count steps in a signed 64-bit integer.
MAX_STEP = 2**63 - 1


def _buffers(op: str, param: Any, grad: Any, **state: Any) -> tuple:
    """The array module, then param and the state arrays (writeable) and grad, all of param's
    shape, none overlapping."""
    xp = check.array_module(op, param, grad, *state.values())
    param = check.array(param, "param", xp=xp)
    arrays = {"param": param, "grad": grad, **state}
    for name, value in arrays.items():
        arrays[name] = value = check.array(value, name, xp=xp)
        check.same_shape(value, name, param.shape, "param")
        if xp is np and name != "grad" and not value.flags.writeable:
            raise ValueError(f"{name}: the array is read-only")
    names = list(arrays)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if check.may_share_memory(arrays[first], arrays[second]):
                raise ValueError(f"{second}: shares memory with {first}; each buffer must be separate")
    return (xp, *arrays.values())


def sgd_step(param: np.ndarray, grad: np.ndarray, velocity: Optional[np.ndarray] = None, *, lr: float,
             momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
    """SGD as PyTorch defines it, in place: ``g = grad + weight_decay * param``; with momentum,
    ``velocity = momentum * velocity + g`` and the step uses ``velocity`` (or
    ``g + momentum * velocity`` with nesterov); ``param -= lr * step``. Momentum needs a
    ``velocity`` buffer, zero-initialised before the first step."""
    lr = check.real(lr, "lr", low=0.0)
    momentum = check.real(momentum, "momentum", low=0.0)
    weight_decay = check.real(weight_decay, "weight_decay", low=0.0)
    nesterov = check.flag(nesterov, "nesterov")
    if nesterov and momentum == 0.0:
        raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
    if momentum != 0.0 and velocity is None:
        raise ValueError("velocity: momentum > 0 needs a velocity buffer (np.zeros_like(param))")
    if velocity is None:
        xp, param, grad = _buffers("sgd_step", param, grad)
    else:
        xp, param, grad, velocity = _buffers("sgd_step", param, grad, velocity=velocity)
    if xp is np:
        _C.sgd_step(param, grad, velocity, lr, momentum, nesterov, weight_decay)
    else:
        _C.cuda_sgd_step(param.data.ptr, grad.data.ptr, _cuda.pointer(velocity), param.size, lr, momentum,
                         nesterov, weight_decay, _cuda.stream(xp))


def adam_step(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, *, step: int,
              lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
              weight_decay: float = 0.0, decoupled: bool = False) -> None:
    """Adam with bias correction, in place; ``step`` counts from 1. ``decoupled=True`` is AdamW
    (``param *= 1 - lr * weight_decay``); otherwise weight decay is added to the gradient."""
    step = check.integer(step, "step", low=1, high=MAX_STEP)
    lr = check.real(lr, "lr", low=0.0)
    beta1 = check.real(beta1, "beta1", low=0.0, high=1.0, high_open=True)
    beta2 = check.real(beta2, "beta2", low=0.0, high=1.0, high_open=True)
    eps = check.real(eps, "eps", low=0.0)
    weight_decay = check.real(weight_decay, "weight_decay", low=0.0)
    decoupled = check.flag(decoupled, "decoupled")
    xp, param, grad, m, v = _buffers("adam_step", param, grad, m=m, v=v)
    if xp is np:
        _C.adam_step(param, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled)
    else:
        _C.cuda_adam_step(param.data.ptr, grad.data.ptr, m.data.ptr, v.data.ptr, param.size, step, lr, beta1, beta2,
                          eps, weight_decay, decoupled, _cuda.stream(xp))


def rmsprop_step(param: np.ndarray, grad: np.ndarray, square_avg: np.ndarray, *, lr: float,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
    """RMSprop as PyTorch defines it, in place: ``g = grad + weight_decay * param``;
    ``square_avg = alpha * square_avg + (1 - alpha) * g^2``;
    ``param -= lr * g / (sqrt(square_avg) + eps)``."""
    lr = check.real(lr, "lr", low=0.0)
    alpha = check.real(alpha, "alpha", low=0.0, high=1.0)
    eps = check.real(eps, "eps", low=0.0)
    weight_decay = check.real(weight_decay, "weight_decay", low=0.0)
    xp, param, grad, square_avg = _buffers("rmsprop_step", param, grad, square_avg=square_avg)
    if xp is np:
        _C.rmsprop_step(param, grad, square_avg, lr, alpha, eps, weight_decay)
    else:
        _C.cuda_rmsprop_step(param.data.ptr, grad.data.ptr, square_avg.data.ptr, param.size, lr, alpha, eps,
                             weight_decay, _cuda.stream(xp))


def clip_grad_norm(grads: Union[np.ndarray, Sequence[np.ndarray]], max_norm: float,
                   norm_out: Optional[np.ndarray] = None) -> float:
    """Scales the gradients in place so that their global L2 norm is at most ``max_norm``
    (factor ``max_norm / (norm + 1e-6)``, as PyTorch) and returns the norm before clipping.
    A non-finite norm is returned as is and nothing is scaled. ``grads`` is one array or a
    sequence of arrays that do not share memory, all NumPy or all CuPy. On the GPU the norm is
    reduced and the scaling decided on the device; reading the norm back waits for the stream.
    With ``norm_out`` (a float64 array of shape (1,) of the grads' library) the norm is stored
    there and ``norm_out`` returned: on the GPU nothing is then read back."""
    max_norm = check.real(max_norm, "max_norm", low=0.0, low_open=True)
    single = isinstance(grads, np.ndarray) or check.is_cupy(grads)
    if single:
        arrays, names = [grads], ["grads"]
    else:
        if isinstance(grads, (str, bytes)) or not hasattr(grads, "__iter__"):
            raise TypeError(f"grads: expected a numpy.ndarray or a sequence of them, "
                            f"got {check.describe(grads)}")
        try:
            arrays = list(grads)
        except (TypeError, ValueError, NotImplementedError) as error:
            # Iterable in name only (a multi-dimensional memoryview, ...).
            raise TypeError(f"grads: expected a numpy.ndarray or a sequence of them, got "
                            f"{check.describe(grads)} ({error})") from None
        names = [f"grads[{index}]" for index in range(len(arrays))]
    xp = check.array_module("clip_grad_norm", *arrays, norm_out)
    if norm_out is not None:
        norm_out = check.scalar_output(norm_out, "norm_out", xp=xp)
    for value, name in zip(arrays, names):
        check.array(value, name, xp=xp)
        if xp is np and not value.flags.writeable:
            raise ValueError(f"{name}: the array is read-only")
    _check_disjoint(arrays, names)
    if xp is not np:
        return _clip_on_gpu(xp, arrays, max_norm, norm_out)
    norm = math.sqrt(sum(_C.sum_of_squares(value) for value in arrays))
    if math.isfinite(norm) and norm > max_norm:
        factor = max_norm / (norm + 1e-6)
        for value in arrays:
            _C.scale(value, factor)
    if norm_out is None:
        return norm
    norm_out[0] = norm
    return norm_out


def _clip_on_gpu(cupy: Any, arrays: list, max_norm: float, norm_out: Any) -> Any:
    """clip_grad_norm on CuPy arrays: the sums of squares accumulate in one workspace, every
    array is scaled by a kernel that reads the norm there, and the norm is read back last (or
    its square root taken into norm_out on the device)."""
    workspace = _cuda.workspace(cupy)
    stream = _cuda.stream(cupy)
    for index, value in enumerate(arrays):
        _C.cuda_sum_of_squares(value.data.ptr, value.size, index > 0, workspace.data.ptr, stream)
    for value in arrays:
        _C.cuda_clip_scale(value.data.ptr, value.size, max_norm, workspace.data.ptr, stream)
    if norm_out is None:
        return math.sqrt(_C.cuda_read_result(workspace.data.ptr, stream))
    # The workspace's first 8 bytes hold the sum of squares as a double (csrc/cuda/workspace.cuh).
    cupy.sqrt(workspace[:8].view(cupy.float64), out=norm_out)
    return norm_out


def _check_disjoint(arrays: list, names: list) -> None:
    """No two of the (C-contiguous) arrays overlap: an array listed twice would be counted twice
    in the norm and scaled twice. Sorting by address keeps this linear-logarithmic."""
    spans = sorted((check.data_pointer(value), value.nbytes, name)
                   for value, name in zip(arrays, names) if value.nbytes > 0)
    for (start, size, name), (next_start, _, next_name) in zip(spans, spans[1:]):
        if next_start < start + size:
            raise ValueError(f"{next_name}: shares memory with {name}; "
                             f"each gradient must be a separate array")
