"""Matrix multiply with a fused epilogue: the Dense layer's forward pass is one call."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda
from .activations import ACTIVATIONS


def matmul(a: np.ndarray, b: np.ndarray, *, trans_a: bool = False, trans_b: bool = False,
           alpha: float = 1.0, beta: float = 0.0, bias: Optional[np.ndarray] = None,
           activation: Optional[str] = None, negative_slope: float = 0.01,
           out: Optional[np.ndarray] = None, allow_tf32: bool = False) -> np.ndarray:
    """``activation(alpha * op(a) @ op(b) + beta * out + bias)`` on 2-D float32 arrays.

    ``op(x)`` is ``x.T`` when ``trans_x`` is set. ``bias`` has one value per output column.
    ``activation`` is None, "relu", "leaky_relu" (with ``negative_slope``), "sigmoid", "tanh"
    or "gelu". ``beta`` needs ``out`` (with ``beta == 0`` its contents are ignored, NaN included).
    ``out`` may not overlap ``a``, ``b`` or ``bias``.

    NumPy arrays run on the CPU, CuPy arrays on the GPU. ``allow_tf32=True`` lets the GPU use
    its tensor cores with ``a`` and ``b`` rounded to TF32 (a 10-bit mantissa: results agree with
    float32 to about 1e-3 relative) and accumulation in float32; it is off by default, and on
    NumPy arrays it is accepted and ignored (the CPU always computes in float32).
    """
    # The compiled call checks all of the above on NumPy arguments given as matmul takes them
    # (the common case) and multiplies; for anything else it returns None without touching
    # anything, and the checks below name the argument at fault or take the call to the GPU.
    result = _C.gemm(a, b, out, bias, trans_a, trans_b, alpha, beta, activation, negative_slope, ACTIVATIONS)
    if result is not None:
        return result
    trans_a = check.flag(trans_a, "trans_a")
    trans_b = check.flag(trans_b, "trans_b")
    allow_tf32 = check.flag(allow_tf32, "allow_tf32")
    xp = check.array_module("matmul", a, b, bias, out)
    a = check.array(a, "a", ndim=2, xp=xp)
    b = check.array(b, "b", ndim=2, xp=xp)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    k_b, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != k_b:
        raise ValueError(f"b: op(a) is {m}x{k} but op(b) is {k_b}x{n}; their inner dimensions must match "
                         f"(trans_a={trans_a}, trans_b={trans_b})")
    if bias is not None:
        bias = check.array(bias, "bias", ndim=1, xp=xp)
        if bias.shape[0] != n:
            raise ValueError(f"bias: expected {n} values (one per output column), got {bias.shape[0]}")
    alpha = check.real(alpha, "alpha")
    beta = check.real(beta, "beta")
    if beta != 0.0 and out is None:
        raise ValueError("beta: a non-zero beta scales the existing contents of out; pass out=")
    code = check.choice(activation, "activation", ACTIVATIONS) if activation is not None else 0
    slope = check.real(negative_slope, "negative_slope")
    out = check.output(out, (m, n), inputs={"a": a, "b": b, "bias": bias}, xp=xp)
    if xp is np:
        # Checked and normalised (booleans, floats), the arguments are ones the compiled call takes.
        result = _C.gemm(a, b, out, bias, trans_a, trans_b, alpha, beta, activation, slope, ACTIVATIONS)
        if result is None:
            raise RuntimeError("matmul: the compiled checks refused arguments that the Python checks accept")
    else:
        _C.cuda_gemm(trans_a, trans_b, m, n, k, alpha, a.data.ptr, a.shape[1], b.data.ptr, b.shape[1],
                     beta, out.data.ptr, n, _cuda.pointer(bias), code, slope, allow_tf32, _cuda.stream(xp))
    return out
