"""Training losses, by name or object: "mse", "binary_crossentropy",
"sparse_categorical_crossentropy" (integer class indices) and "categorical_crossentropy"
(one-hot or probability rows, as Keras'). Each validates and converts targets once, before training,
and computes the batch loss and its gradient in one kernel call into a preallocated buffer.

The cross-entropies work on logits: the model's last layer outputs logits and the loss applies
the sigmoid or softmax itself (numerically stable for any logit). A last layer declared with
the matching activation (``Dense(1, activation="sigmoid")`` with binary cross-entropy,
``Dense(k, activation="softmax")`` or a final ``Softmax()`` layer with sparse categorical
cross-entropy) is folded into the loss: training uses the layer's pre-activation as logits and
``predict`` applies the activation once. The mismatched pairs (softmax with binary
cross-entropy, sigmoid with sparse categorical cross-entropy) raise ValueError."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from . import ops
from .ops import _checks as check
from .backends import array_module
from .data import to_float32


class Loss:
    """Base class. ``task`` is "regression", "binary" or "multiclass"; ``link`` is the activation
    that turns the model's output into predictions (None, "sigmoid" or "softmax")."""

    name = "loss"
    task = "regression"
    link: Optional[str] = None

    def fold_activation(self, final_activation: Optional[str], units: int) -> bool:
        """Whether the last layer's activation is folded into this loss (checks the pair)."""
        return False

    def targets(self, y, rows: int, units: int) -> np.ndarray:
        """``y`` checked and converted for a model with ``units`` outputs (a new array or y)."""
        raise NotImplementedError

    def __call__(self, outputs: np.ndarray, targets: np.ndarray, grad_out: np.ndarray, loss_out: Any = None) -> Any:
        """The mean loss over the batch (a Python float, or ``loss_out`` holding it: see the
        ops' loss_out); its gradient w.r.t. ``outputs`` goes to ``grad_out``."""
        raise NotImplementedError

    def per_sample(self, outputs: Any, targets: Any) -> Any:
        """Each sample's loss, float64, shape (rows,), on the outputs' device: the values whose
        mean ``__call__`` returns."""
        raise NotImplementedError

    def weighted(self, outputs: Any, targets: Any, weights: Any, grad_out: Any, loss_out: Any = None) -> Any:
        """Keras' sample weighting: the loss sum_i w_i l_i / rows (the batch's size, not the
        weights' sum) and its gradient, each row of the unweighted gradient scaled by w_i.
        ``weights`` is float32, shape (rows,), on the outputs' device."""
        xp = array_module(outputs)
        self(outputs, targets, grad_out)
        xp.multiply(grad_out, weights[:, None], out=grad_out)
        loss = (self.per_sample(outputs, targets) * weights).sum() / outputs.shape[0]
        if loss_out is not None:
            loss_out[...] = loss
            return loss_out
        return float(loss)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _float_targets(y, rows: int, units: int, loss_name: str) -> np.ndarray:
    targets = to_float32(y, "y")
    if targets.ndim == 1 and units == 1:
        targets = targets.reshape(-1, 1)
    if targets.ndim != 2 or targets.shape[1] != units:
        expected = f"({rows}, {units})" + (f" or ({rows},)" if units == 1 else "")
        raise ValueError(f"y: {loss_name} needs targets of shape {expected} to match the model's "
                         f"{units} output(s), got shape {np.shape(y)}")
    return np.require(targets, requirements="CA")


class MeanSquaredError(Loss):
    """Mean over all elements of (output - target)^2. The model's output is the prediction:
    a final activation (even sigmoid or softmax) is applied in training and in predict."""

    name = "mse"

    def targets(self, y, rows: int, units: int) -> np.ndarray:
        return _float_targets(y, rows, units, "mse")

    def __call__(self, outputs, targets, grad_out, loss_out=None):
        loss, _ = ops.mse(outputs, targets, out=grad_out, loss_out=loss_out)
        return loss

    def per_sample(self, outputs, targets):
        difference = outputs.astype(np.float64) - targets
        return (difference * difference).mean(axis=1)


class BinaryCrossentropy(Loss):
    """Binary cross-entropy on logits, averaged over all outputs (one output: binary
    classification; several: independent labels). Targets are in [0, 1]; ``predict`` returns
    sigmoid probabilities."""

    name = "binary_crossentropy"
    task = "binary"
    link = "sigmoid"

    def fold_activation(self, final_activation, units):
        if final_activation == "softmax":
            raise ValueError("loss: binary_crossentropy applies a sigmoid to the model's output, but the "
                             "last layer applies softmax; use activation=None or 'sigmoid' on the last "
                             "layer, or sparse_categorical_crossentropy for one-of-k classes")
        return final_activation == "sigmoid"

    def targets(self, y, rows, units):
        targets = _float_targets(y, rows, units, "binary_crossentropy")
        outside = (targets < 0.0) | (targets > 1.0)
        if outside.any():
            index = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(f"y: binary_crossentropy needs targets in [0, 1], got {float(targets[index]):g} at "
                             f"index {index if units > 1 else index[0]}")
        return targets

    def __call__(self, outputs, targets, grad_out, loss_out=None):
        loss, _ = ops.binary_cross_entropy(outputs, targets, out=grad_out, loss_out=loss_out)
        return loss

    def per_sample(self, outputs, targets):
        xp = array_module(outputs)
        logits = outputs.astype(np.float64)
        # max(z, 0) - z t + log(1 + exp(-|z|)): finite for any logit.
        elements = xp.maximum(logits, 0.0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))
        return elements.mean(axis=1)


class SparseCategoricalCrossentropy(Loss):
    """Softmax cross-entropy on logits against one integer class index per sample, averaged over
    samples; ``predict`` returns softmax probabilities."""

    name = "sparse_categorical_crossentropy"
    task = "multiclass"
    link = "softmax"

    def fold_activation(self, final_activation, units):
        if units < 2:
            raise ValueError(f"loss: {self.name} needs one output per class (at least "
                             f"2), but the model has {units}; use binary_crossentropy with one output "
                             f"for two classes")
        if final_activation == "sigmoid":
            raise ValueError(f"loss: {self.name} applies a softmax to the model's "
                             "output, but the last layer applies sigmoid; use activation=None or "
                             "'softmax' on the last layer, or binary_crossentropy")
        return final_activation == "softmax"

    def targets(self, y, rows, units):
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(f"y: sparse_categorical_crossentropy takes one class index per sample, shape "
                             f"({rows},), got shape {labels.shape} (for one-hot targets pass "
                             f"y.argmax(axis=1))")
        if labels.dtype.kind == "f":
            integral = np.isfinite(labels) & (labels == np.round(labels))
            if not integral.all():
                index = int(np.argmin(integral))
                raise ValueError(f"y: class labels must be integers, got {labels[index]} at index {index}")
        elif labels.dtype.kind not in "iub":
            raise TypeError(f"y: class labels must be integers, got dtype {labels.dtype}")
        if labels.size:
            low, high = labels.min(), labels.max()
            if low < 0 or high >= units:
                bad = low if low < 0 else high
                index = int(np.argmax(labels == bad))
                raise ValueError(f"y: class labels must be in [0, {units}) for a model with {units} outputs, "
                                 f"got {bad:g} at index {index}")
        return labels.astype(np.int64)

    def __call__(self, outputs, targets, grad_out, loss_out=None):
        loss, _ = ops.softmax_cross_entropy(outputs, targets, out=grad_out, loss_out=loss_out)
        return loss

    def per_sample(self, outputs, targets):
        xp = array_module(outputs)
        logits = outputs.astype(np.float64)
        return _log_sum_exp(xp, logits)[:, 0] - xp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]


class CategoricalCrossentropy(SparseCategoricalCrossentropy):
    """Softmax cross-entropy on logits against a target row per sample: one-hot rows or
    probabilities (label smoothing, soft labels), as Keras' categorical_crossentropy. Per
    sample -sum_j t_j log softmax(z)_j, averaged over samples; the gradient is
    (softmax(z) * sum_j t_j - t) / rows. ``predict`` returns softmax probabilities."""

    name = "categorical_crossentropy"

    def targets(self, y, rows, units):
        if np.ndim(y) == 1:
            raise ValueError(f"y: categorical_crossentropy takes a one-hot or probability row per sample, shape "
                             f"({rows}, {units}), got shape {np.shape(y)}; for class indices use "
                             f"sparse_categorical_crossentropy")
        targets = _float_targets(y, rows, units, self.name)
        negative = targets < 0.0
        if negative.any():
            index = tuple(int(i) for i in np.argwhere(negative)[0])
            raise ValueError(f"y: categorical_crossentropy needs one-hot or probability rows (no negative values), "
                             f"got {float(targets[index]):g} at index {index}")
        return targets

    def __call__(self, outputs, targets, grad_out, loss_out=None):
        xp = array_module(outputs)
        rows = outputs.shape[0]
        probabilities = ops.softmax(outputs, out=grad_out)
        loss = self.per_sample(outputs, targets).sum() / rows
        mass = targets.sum(axis=1, keepdims=True)
        xp.multiply(probabilities, mass, out=grad_out)
        xp.subtract(grad_out, targets, out=grad_out)
        xp.divide(grad_out, np.float32(rows), out=grad_out)
        if loss_out is not None:
            loss_out[...] = loss
            return loss_out
        return float(loss)

    def per_sample(self, outputs, targets):
        xp = array_module(outputs)
        logits = outputs.astype(np.float64)
        # float64 log-sum-exp: sum_j t_j (lse - z_j) keeps its precision for any logits.
        return (targets * (_log_sum_exp(xp, logits) - logits)).sum(axis=1)


def _log_sum_exp(xp: Any, logits: Any) -> Any:
    """log sum_j exp(z_j) per row, shape (rows, 1), shifted by the row's largest logit."""
    largest = logits.max(axis=1, keepdims=True)
    return largest + xp.log(xp.exp(logits - largest).sum(axis=1, keepdims=True))


_BY_NAME = {
    "mse": MeanSquaredError,
    "mean_squared_error": MeanSquaredError,
    "binary_crossentropy": BinaryCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
}


def get(identifier: Union[str, Loss]) -> Loss:
    """The loss named by ``identifier``, or the object itself."""
    return check.instance_or_named(identifier, "loss", Loss, _BY_NAME, "a Loss or one of")
