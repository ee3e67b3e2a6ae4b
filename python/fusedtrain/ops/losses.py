"""Losses with their gradient in one pass: each returns ``(loss, grad)`` where grad is the
gradient of the (reduced) loss with respect to the predictions or logits.

On CuPy arrays the kernels run on the GPU and the loss comes back as a Python float: the call
waits for CuPy's current stream to reach it (one synchronization per call); the gradient is
complete when the call returns. With ``loss_out=`` (a float64 array of shape (1,) of the
inputs' library) the loss is stored there instead and the op returns ``(loss_out, grad)``; on
the GPU it then waits for nothing, which is how a training step keeps its loss on the device."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .. import _C
from . import _checks as check
from . import _cuda

REDUCTIONS = {"mean": 0, "sum": 1}


def _elementwise(op: str, pred: Any, target: Any, reduction: str, out: Any, loss_out: Any, pred_name: str,
                 cpu_kernel: Any, cuda_kernel: str) -> Tuple[Any, Any]:
    """An elementwise loss and its gradient: `pred_name` and target of one shape, not empty; out
    receives the gradient (it may be the predictions themselves). `cuda_kernel` is named, not
    passed: a build without CUDA has no such function."""
    code = check.choice(reduction, "reduction", REDUCTIONS)
    xp = check.array_module(op, pred, target, out, loss_out)
    pred = check.array(pred, pred_name, xp=xp)
    target = check.array(target, "target", xp=xp)
    check.same_shape(target, "target", pred.shape, pred_name)
    if pred.size == 0:
        raise ValueError(f"{pred_name}: the loss of an empty batch is undefined (got shape {tuple(pred.shape)})")
    out = check.output(out, pred.shape, inputs={pred_name: pred, "target": target}, in_place=(pred_name,), xp=xp)
    if loss_out is not None:
        loss_out = check.scalar_output(loss_out, "loss_out", xp=xp)
    if xp is np:
        loss = cpu_kernel(pred, target, out, code)
        return _stored(loss, loss_out), out
    workspace = _cuda.workspace(xp)
    loss = getattr(_C, cuda_kernel)(pred.data.ptr, target.data.ptr, out.data.ptr, pred.size, code,
                                    workspace.data.ptr, _cuda.pointer(loss_out), _cuda.stream(xp))
    return (loss if loss_out is None else loss_out), out


def _stored(loss: float, loss_out: Any) -> Any:
    """On the CPU: the loss itself, or ``loss_out`` holding it."""
    if loss_out is None:
        return loss
    loss_out[0] = loss
    return loss_out


def mse(pred: np.ndarray, target: np.ndarray, reduction: str = "mean",
        out: Optional[np.ndarray] = None, loss_out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Mean (or sum) of (pred - target)^2 over all elements, and its gradient.

    ``out`` receives the gradient (it may be ``pred`` itself); ``loss_out`` the loss (see above)."""
    return _elementwise("mse", pred, target, reduction, out, loss_out, "pred", _C.mse_loss, "cuda_mse_loss")


def binary_cross_entropy(logits: np.ndarray, target: np.ndarray, reduction: str = "mean",
                         out: Optional[np.ndarray] = None,
                         loss_out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Binary cross-entropy on logits (sigmoid folded in, stable for any logit) with targets in
    [0, 1]; mean (or sum) over all elements. The gradient is sigmoid(logits) - target (scaled).

    ``out`` receives the gradient (it may be ``logits`` itself); ``loss_out`` the loss."""
    return _elementwise("binary_cross_entropy", logits, target, reduction, out, loss_out, "logits",
                        _C.binary_cross_entropy_loss, "cuda_binary_cross_entropy_loss")


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray, reduction: str = "mean",
                          out: Optional[np.ndarray] = None,
                          loss_out: Optional[np.ndarray] = None) -> Tuple[float, np.ndarray]:
    """Softmax cross-entropy of a (rows, classes) array of logits against one int32/int64 label
    per row; mean over rows (or sum). The gradient is softmax(logits) - onehot(labels) (scaled).
    A label outside [0, classes) raises ValueError. ``out`` receives the gradient (it may be
    ``logits`` itself).

    On the GPU the labels are checked by the kernel itself and the error is raised once the
    loss is read back; ``out`` then holds the softmax of the rows, not a gradient (on the CPU,
    nothing is written). With ``loss_out`` nothing is read back on the GPU, so a bad label is
    not reported there (its row adds nothing to the loss): check labels before, as fit does."""
    code = check.choice(reduction, "reduction", REDUCTIONS)
    xp = check.array_module("softmax_cross_entropy", logits, labels, out, loss_out)
    logits = check.array(logits, "logits", ndim=2, xp=xp)
    rows, classes = logits.shape
    if rows == 0:
        raise ValueError(f"logits: the loss of an empty batch is undefined (got shape {tuple(logits.shape)})")
    if classes == 0:
        raise ValueError(f"logits: expected at least one class column, got shape {tuple(logits.shape)}")
    labels = check.labels(labels, "labels", rows, xp=xp)
    out = check.output(out, logits.shape, inputs={"logits": logits, "labels": labels}, in_place=("logits",), xp=xp)
    if loss_out is not None:
        loss_out = check.scalar_output(loss_out, "loss_out", xp=xp)
    try:
        if xp is np:
            return _stored(_C.softmax_cross_entropy_loss(logits, labels, out, code), loss_out), out
        workspace = _cuda.workspace(xp)
        label_bits = 32 if labels.dtype == np.int32 else 64
        loss = _C.cuda_softmax_cross_entropy_loss(logits.data.ptr, labels.data.ptr, label_bits, out.data.ptr, rows,
                                                  classes, code, workspace.data.ptr, _cuda.pointer(loss_out),
                                                  _cuda.stream(xp))
    except ValueError as error:
        raise ValueError(f"labels: {error}") from None
    return (loss if loss_out is None else loss_out), out
