"""Activation functions and their gradients, elementwise on float32 arrays of any shape, plus the
row-wise softmax. NumPy arrays run on the CPU kernels, CuPy arrays on the CUDA kernels (on
CuPy's current stream, without waiting for them)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda

# Codes of csrc/include/fusedtrain/types.h's Activation.
ACTIVATIONS = {"relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4, "gelu": 5}


def _forward(name: str, code: int, param: float, x: Any, out: Any) -> Any:
    xp = check.array_module(name, x, out)
    x = check.array(x, "x", xp=xp)
    out = check.output(out, x.shape, inputs={"x": x}, in_place=("x",), xp=xp)
    if xp is np:
        _C.activation_forward(code, param, x, out)
    else:
        _C.cuda_activation_forward(code, param, x.data.ptr, out.data.ptr, x.size, _cuda.stream(xp))
    return out


def _backward(name: str, code: int, param: float, grad_output: Any, x: Any, out: Any) -> Any:
    xp = check.array_module(name, grad_output, x, out)
    x = check.array(x, "x", xp=xp)
    grad_output = check.array(grad_output, "grad_output", xp=xp)
    check.same_shape(grad_output, "grad_output", x.shape, "x")
    out = check.output(out, x.shape, inputs={"grad_output": grad_output, "x": x}, in_place=("grad_output",), xp=xp)
    if xp is np:
        _C.activation_backward(code, param, grad_output, x, out)
    else:
        _C.cuda_activation_backward(code, param, grad_output.data.ptr, x.data.ptr, out.data.ptr, x.size,
                                    _cuda.stream(xp))
    return out


def relu(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """max(x, 0). ``out`` may be ``x`` itself."""
    return _forward("relu", 1, 0.0, x, out)


def relu_grad(grad_output: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_output where x > 0, else 0 (0 at x == 0). ``out`` may be ``grad_output``."""
    return _backward("relu_grad", 1, 0.0, grad_output, x, out)


def leaky_relu(x: np.ndarray, negative_slope: float = 0.01, out: Optional[np.ndarray] = None) -> np.ndarray:
    """x where x > 0, else negative_slope * x."""
    slope = check.real(negative_slope, "negative_slope")
    return _forward("leaky_relu", 2, slope, x, out)


def leaky_relu_grad(grad_output: np.ndarray, x: np.ndarray, negative_slope: float = 0.01,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    slope = check.real(negative_slope, "negative_slope")
    return _backward("leaky_relu_grad", 2, slope, grad_output, x, out)


def sigmoid(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """1 / (1 + exp(-x))."""
    return _forward("sigmoid", 3, 0.0, x, out)


def sigmoid_grad(grad_output: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_output * s * (1 - s) with s = sigmoid(x) (x is the forward's input)."""
    return _backward("sigmoid_grad", 3, 0.0, grad_output, x, out)


def tanh(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    return _forward("tanh", 4, 0.0, x, out)


def tanh_grad(grad_output: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """grad_output * (1 - tanh(x)^2) (x is the forward's input)."""
    return _backward("tanh_grad", 4, 0.0, grad_output, x, out)


def gelu(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return _forward("gelu", 5, 0.0, x, out)


def gelu_grad(grad_output: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    return _backward("gelu_grad", 5, 0.0, grad_output, x, out)


def _softmax_rows(x: Any) -> tuple:
    """(rows, cols) of the softmax over the last axis of x."""
    if x.ndim == 0:
        raise ValueError("x: softmax needs at least 1 dimension, got a 0-D array")
    cols = x.shape[-1]
    return (x.size // cols if cols else 0), cols


def softmax(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Softmax over the last axis (max-subtracted, so large inputs do not overflow)."""
    xp = check.array_module("softmax", x, out)
    x = check.array(x, "x", xp=xp)
    rows, cols = _softmax_rows(x)
    out = check.output(out, x.shape, inputs={"x": x}, in_place=("x",), xp=xp)
    if xp is np:
        _C.softmax_forward(x, out)
    else:
        _C.cuda_softmax_forward(x.data.ptr, out.data.ptr, rows, cols, _cuda.stream(xp))
    return out


def softmax_grad(grad_output: np.ndarray, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gradient of softmax over the last axis: s * (grad_output - sum(grad_output * s)) with
    s = softmax(x), x being the forward's input (like every ``*_grad`` op). ``out`` may be ``x``
    itself, but not ``grad_output``."""
    xp = check.array_module("softmax_grad", grad_output, x, out)
    x = check.array(x, "x", xp=xp)
    rows, cols = _softmax_rows(x)
    grad_output = check.array(grad_output, "grad_output", xp=xp)
    check.same_shape(grad_output, "grad_output", x.shape, "x")
    out = check.output(out, x.shape, inputs={"grad_output": grad_output, "x": x}, in_place=("x",), xp=xp)
    if xp is np:
        _C.softmax_backward(grad_output, x, out)
    else:
        _C.cuda_softmax_backward(grad_output.data.ptr, x.data.ptr, out.data.ptr, rows, cols, _cuda.stream(xp))
    return out
