"""Reductions used by training: the bias gradient (column sums), row argmax and accuracy."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _C
from . import _checks as check


def bias_grad(grad_output: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Column sums of a (rows, cols) gradient: the gradient of a bias added to every row."""
    grad_output = check.array(grad_output, "grad_output", ndim=2)
    out = check.output(out, (grad_output.shape[1],), inputs={"grad_output": grad_output})
    _C.bias_grad(grad_output, out)
    return out


def argmax(x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Index (int64) of the largest value of each row of a 2-D array; the first on ties, and a
    NaN counts as the largest, as in numpy.argmax(x, axis=1)."""
    x = check.array(x, "x", ndim=2)
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError(f"x: argmax of rows with no columns is undefined (got shape {x.shape})")
    out = check.output(out, (x.shape[0],), dtype=np.int64)
    _C.argmax_rows(x, out)
    return out


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows of ``scores`` (rows, classes) whose argmax equals the int32/int64 label."""
    scores = check.array(scores, "scores", ndim=2)
    rows, classes = scores.shape
    if rows == 0:
        raise ValueError("scores: the accuracy of an empty batch is undefined")
    if classes == 0:
        raise ValueError(f"scores: expected at least one class column, got shape {scores.shape}")
    labels = check.labels(labels, "labels", rows)
    return _C.count_correct(scores, labels) / rows
