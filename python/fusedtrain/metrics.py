"""Metrics reported by fit and evaluate, by name or object: "accuracy" (alias "acc"), "mae"
and "mse" (aliases "mean_absolute_error", "mean_squared_error"). A metric gives the mean over
one batch; the model averages the batches weighted by their number of samples.

accuracy: for sparse categorical cross-entropy, the share of samples whose largest output is
the label; for binary cross-entropy, the share of outputs whose probability is above 0.5
where the target is above 0.5 or at most 0.5 where it is not (Keras' binary accuracy).
mae/mse compare predictions (probabilities for binary cross-entropy) with targets of the same
shape, so they need the mse or binary cross-entropy loss."""

from __future__ import annotations

from typing import Any, Union

import numpy as np

from . import ops
from .backends import array_module
from .ops import _checks as check
from .losses import Loss


def _mean(total: Any, count: int, out: Any) -> Any:
    """total / count: a Python float, or stored into ``out`` on the array's device."""
    if out is None:
        return float(total) / count
    array_module(out).divide(total, float(count), out=out)
    return out


class Metric:
    """Base class. ``uses_probabilities``: the metric gets predictions (the loss' link applied)
    rather than logits. ``check(loss)`` raises ValueError for a loss it cannot follow."""

    name = "metric"
    uses_probabilities = True

    def check(self, loss: Loss) -> None:
        """Raises ValueError when this metric has no meaning for ``loss``."""

    def __call__(self, y_true: np.ndarray, y_pred: np.ndarray, task: str, scratch: np.ndarray,
                 out: Any = None) -> Any:
        """Mean over the batch; ``scratch`` is a float32 array of y_pred's shape to work in.
        With ``out`` (a float64 array of shape (1,) of the inputs' library) the mean is stored
        there, without a read-back on the GPU, and ``out`` returned."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Accuracy(Metric):
    name = "accuracy"
    # Accuracy reads logits: argmax and "probability > 0.5" (logit > 0) do not need the link.
    uses_probabilities = False

    def check(self, loss):
        if loss.task == "regression":
            raise ValueError(f"metrics: accuracy needs a classification loss (binary_crossentropy or "
                             f"sparse_categorical_crossentropy), got {loss.name}")

    def __call__(self, y_true, y_pred, task, scratch, out=None):
        if task == "multiclass":
            if y_true.ndim == 2:
                # categorical_crossentropy's target rows: the class is the largest entry.
                y_true = array_module(y_true).argmax(y_true, axis=1)
            return ops.accuracy(y_pred, y_true, out=out)
        xp = array_module(y_pred)
        correct = xp.count_nonzero((y_pred > 0.0) == (y_true > 0.5))
        return _mean(correct, y_pred.size, out)


class _Elementwise(Metric):
    def check(self, loss):
        if loss.task == "multiclass":
            raise ValueError(f"metrics: {self.name} compares predictions with targets of the same shape, "
                             f"but {loss.name} takes class indices; use accuracy")


class MeanAbsoluteError(_Elementwise):
    name = "mae"

    def __call__(self, y_true, y_pred, task, scratch, out=None):
        xp = array_module(y_pred)
        xp.subtract(y_pred, y_true, out=scratch)
        xp.abs(scratch, out=scratch)
        return _mean(scratch.sum(dtype=np.float64), y_pred.size, out)


class MeanSquaredError(_Elementwise):
    name = "mse"

    def __call__(self, y_true, y_pred, task, scratch, out=None):
        loss, _ = ops.mse(y_pred, y_true, out=scratch, loss_out=out)
        return loss


_BY_NAME = {
    "accuracy": Accuracy,
    "acc": Accuracy,
    "mae": MeanAbsoluteError,
    "mean_absolute_error": MeanAbsoluteError,
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
}


def get(identifier: Union[str, Metric]) -> Metric:
    """The metric named by ``identifier``, or the object itself; its ``name`` is the key in the
    training history ("accuracy", "mae", "mse", whatever alias was given)."""
    return check.instance_or_named(identifier, "metrics", Metric, _BY_NAME, "Metric objects or names among")
