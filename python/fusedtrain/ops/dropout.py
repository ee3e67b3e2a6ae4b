"""Dropout from a counter-based Philox stream: the mask of element i depends only on
(seed, step, i), so the same call gives the same mask on every machine and thread count, and on
the GPU (CuPy arrays) the same mask as on the CPU."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda


def _rate(rate: float) -> float:
    return check.real(rate, "rate", low=0.0, high=1.0, high_open=True)


def dropout(x: np.ndarray, rate: float, *, seed: int, step: int, out: Optional[np.ndarray] = None,
            mask_out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Zeroes each element with probability ``rate`` and scales the others by 1 / (1 - rate).

    Returns ``(y, mask)``; ``mask`` is a uint8 array of 0/1 of x's shape. ``seed`` and ``step``
    (integers in [0, 2^64)) select the random stream: use a new ``step`` for every call.
    ``out`` may be ``x`` itself."""
    rate = _rate(rate)
    seed = check.integer(seed, "seed", low=0, high=2**64 - 1)
    step = check.integer(step, "step", low=0, high=2**64 - 1)
    xp = check.array_module("dropout", x, out, mask_out)
    x = check.array(x, "x", xp=xp)
    out = check.output(out, x.shape, inputs={"x": x}, in_place=("x",), xp=xp)
    mask_out = check.output(mask_out, x.shape, dtype=np.uint8, name="mask_out", inputs={"x": x, "out": out}, xp=xp)
    if xp is np:
        _C.dropout_forward(x, out, mask_out, rate, seed, step)
    else:
        _C.cuda_dropout_forward(x.data.ptr, out.data.ptr, mask_out.data.ptr, x.size, rate, seed, step,
                                _cuda.stream(xp))
    return out, mask_out


def dropout_grad(grad_output: np.ndarray, mask: np.ndarray, rate: float,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_output * mask / (1 - rate): the gradient of ``dropout`` with the mask it returned.
    ``out`` may be ``grad_output`` itself."""
    rate = _rate(rate)
    xp = check.array_module("dropout_grad", grad_output, mask, out)
    grad_output = check.array(grad_output, "grad_output", xp=xp)
    mask = check.array(mask, "mask", dtype=np.uint8, xp=xp)
    check.same_shape(mask, "mask", grad_output.shape, "grad_output")
    out = check.output(out, grad_output.shape, inputs={"grad_output": grad_output, "mask": mask},
                       in_place=("grad_output",), xp=xp)
    if xp is np:
        _C.dropout_backward(grad_output, mask, out, rate)
    else:
        _C.cuda_dropout_backward(grad_output.data.ptr, mask.data.ptr, out.data.ptr, grad_output.size, rate,
                                 _cuda.stream(xp))
    return out
