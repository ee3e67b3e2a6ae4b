"""Losses with their gradient in one pass: each returns ``(loss, grad)`` where grad is the
gradient of the (reduced) loss with respect to the predictions or logits."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .. import _C
from . import _checks as check

REDUCTIONS = {"mean": 0, "sum": 1}


def _pair(pred: np.ndarray, target: np.ndarray, pred_name: str) -> Tuple[np.ndarray, np.ndarray]:
    pred = check.array(pred, pred_name)
    target = check.array(target, "target")
    check.same_shape(target, "target", pred.shape, pred_name)
    if pred.size == 0:
        raise ValueError(f"{pred_name}: the loss of an empty batch is undefined (got shape {pred.shape})")
    return pred, target


def mse(pred: np.ndarray, target: np.ndarray, reduction: str = "mean",
        out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Mean (or sum) of (pred - target)^2 over all elements, and its gradient.

    ``out`` receives the gradient (it may be ``pred`` itself)."""
    code = check.choice(reduction, "reduction", REDUCTIONS)
    pred, target = _pair(pred, target, "pred")
    out = check.output(out, pred.shape, inputs={"pred": pred, "target": target}, in_place=("pred",))
    loss = _C.mse_loss(pred, target, out, code)
    return loss, out


def binary_cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                         out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Binary cross-entropy on logits (sigmoid folded in, stable for any logit) with targets in
    [0, 1]; mean (or sum) over all elements. The gradient is sigmoid(logits) - target (scaled).

    ``out`` receives the gradient (it may be ``logits`` itself)."""
    code = check.choice(reduction, "reduction", REDUCTIONS)
    logits, target = _pair(logits, target, "logits")
    out = check.output(out, logits.shape, inputs={"logits": logits, "target": target}, in_place=("logits",))
    loss = _C.binary_cross_entropy_loss(logits, target, out, code)
    return loss, out


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, reduction: str = "mean",
                          out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Softmax cross-entropy of a (rows, classes) array of logits against one int32/int64 label
    per row; mean over rows (or sum). The gradient is softmax(logits) - onehot(labels) (scaled).
    A label outside [0, classes) raises ValueError. ``out`` receives the gradient (it may be
    ``logits`` itself)."""
    code = check.choice(reduction, "reduction", REDUCTIONS)
    logits = check.array(logits, "logits", ndim=2)
    rows, classes = logits.shape
    if rows == 0:
        raise ValueError(f"logits: the loss of an empty batch is undefined (got shape {logits.shape})")
    if classes == 0:
        raise ValueError(f"logits: expected at least one class column, got shape {logits.shape}")
    labels = check.labels(labels, "labels", rows)
    out = check.output(out, logits.shape, inputs={"logits": logits, "labels": labels}, in_place=("logits",))
    try:
        loss = _C.softmax_cross_entropy_loss(logits, labels, out, code)
    except ValueError as error:
        raise ValueError(f"labels: {error}") from None
    return loss, out
