"""Weight penalties as Keras defines them: ``L1(l1)`` adds ``l1 * sum(|w|)`` to the loss,
``L2(l2)`` adds ``l2 * sum(w^2)`` (no factor 1/2), ``L1L2`` both. The training loop adds the
penalty to the reported loss and its gradient to the kernel gradient."""

from __future__ import annotations

from typing import Any, Dict, Optional, Union

import numpy as np

from .backends import array_module
from .ops import _checks as check


def _host_float(value: Any) -> Any:
    """A NumPy scalar as a Python float; a device scalar (0-d) as float64 on the device, read
    when the logs are: the penalty is then computed in the same precision on both devices."""
    return float(value) if isinstance(value, np.generic) else value.astype(np.float64)


class Regularizer:
    """Base class: ``penalty(weights, scratch)`` is the loss term, ``add_gradient(weights, grad,
    scratch)`` adds its gradient to ``grad`` in place. ``scratch`` is a float32 array of the
    weights' shape that the model allocates once, so that a training step allocates nothing."""

    def penalty(self, weights: np.ndarray, scratch: np.ndarray) -> float:
        raise NotImplementedError

    def add_gradient(self, weights: np.ndarray, grad: np.ndarray, scratch: np.ndarray) -> None:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = check.real(l1, "l1", low=0.0)
        self.l2 = check.real(l2, "l2", low=0.0)

    def penalty(self, weights: np.ndarray, scratch: np.ndarray) -> float:
        # On the GPU the sums stay on the device (0-d CuPy arrays): nothing is read back.
        xp = array_module(weights)
        total = 0.0
        if self.l1:
            total += self.l1 * _host_float(xp.abs(weights, out=scratch).sum())
        if self.l2:
            flat = weights.reshape(-1)
            total += self.l2 * _host_float(xp.dot(flat, flat))
        return total

    def add_gradient(self, weights: np.ndarray, grad: np.ndarray, scratch: np.ndarray) -> None:
        xp = array_module(weights)
        if self.l1:
            xp.sign(weights, out=scratch)
            scratch *= np.float32(self.l1)
            grad += scratch
        if self.l2:
            xp.multiply(weights, np.float32(2.0 * self.l2), out=scratch)
            grad += scratch

    def get_config(self) -> Dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> Dict[str, Any]:
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> Dict[str, Any]:
        return {"l2": self.l2}


# The concrete regularizers by class name: the only ones a model file may name (the base class
# Regularizer computes nothing).
CLASSES = {cls.__name__: cls for cls in (L1L2, L1, L2)}
_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01)}


def get(identifier: Union[None, str, Regularizer]) -> Optional[Regularizer]:
    """None, the regularizer named by ``identifier`` (Keras' defaults: 0.01), or the object itself."""
    if identifier is None:
        return None
    return check.instance_or_named(identifier, "kernel_regularizer", Regularizer, _BY_NAME,
                                   "None, a Regularizer or one of")
