"""Reductions used by training: the bias gradient (column sums), row argmax and accuracy.
NumPy arrays run on the CPU, CuPy arrays on the GPU (accuracy returns a Python float, so on the
GPU it waits for CuPy's current stream)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda


def bias_grad(grad_output: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Column sums of a (rows, cols) gradient: the gradient of a bias added to every row."""
    xp = check.array_module("bias_grad", grad_output, out)
    grad_output = check.array(grad_output, "grad_output", ndim=2, xp=xp)
    out = check.output(out, (grad_output.shape[1],), inputs={"grad_output": grad_output}, xp=xp)
    if xp is np:
        _C.bias_grad(grad_output, out)
    else:
        rows, cols = grad_output.shape
        workspace = _cuda.workspace(xp)
        _C.cuda_bias_grad(grad_output.data.ptr, out.data.ptr, rows, cols, workspace.data.ptr, _cuda.stream(xp))
    return out


def argmax(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Index (int64) of the largest value of each row of a 2-D array; the first on ties, and a
    NaN counts as the largest, as in numpy.argmax(x, axis=1)."""
    xp = check.array_module("argmax", x, out)
    x = check.array(x, "x", ndim=2, xp=xp)
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError(f"x: argmax of rows with no columns is undefined (got shape {tuple(x.shape)})")
    out = check.output(out, (x.shape[0],), dtype=np.int64, inputs={"x": x}, xp=xp)
    if xp is np:
        _C.argmax_rows(x, out)
    else:
        _C.cuda_argmax_rows(x.data.ptr, out.data.ptr, x.shape[0], x.shape[1], _cuda.stream(xp))
    return out


def accuracy(scores: np.ndarray, labels: np.ndarray, out: Optional[np.ndarray] = None) -> float:
    """Fraction of rows of ``scores`` (rows, classes) whose argmax equals the int32/int64 label.
    A label outside [0, classes) raises ValueError (on the GPU once the count is read back). With ``out`` (a float64 array of
    shape (1,) of the inputs' library) the fraction is stored there and ``out`` returned; on the
    GPU the call then waits for nothing."""
    xp = check.array_module("accuracy", scores, labels, out)
    scores = check.array(scores, "scores", ndim=2, xp=xp)
    rows, classes = scores.shape
    if rows == 0:
        raise ValueError("scores: the accuracy of an empty batch is undefined")
    if classes == 0:
        raise ValueError(f"scores: expected at least one class column, got shape {tuple(scores.shape)}")
    labels = check.labels(labels, "labels", rows, xp=xp)
    if out is not None:
        out = check.scalar_output(out, "out", xp=xp)
    if xp is np:
        # A label outside [0, classes) would silently count as wrong; it is a mistake in the
        # data, as it is for softmax_cross_entropy, and the kernel's checks refuse it.
        try:
            fraction = _C.count_correct(scores, labels) / rows
        except ValueError as error:
            raise ValueError(f"labels: {error}") from None
        if out is None:
            return fraction
        out[0] = fraction
        return out
    workspace = _cuda.workspace(xp)
    label_bits = 32 if labels.dtype == np.int32 else 64
    try:
        correct = _C.cuda_count_correct(scores.data.ptr, labels.data.ptr, label_bits, rows, classes,
                                        workspace.data.ptr, _cuda.pointer(out), _cuda.stream(xp))
    except ValueError as error:
        raise ValueError(f"labels: {error}") from None
    return correct / rows if out is None else out
