"""Optimizers with Keras' names and PyTorch's update rules (those of the fused kernels in
fusedtrain.ops). Each keeps its state in flat float32 buffers the size of the model's parameter
buffer, allocated once when training starts, and updates the parameters with one kernel call
per contiguous run of trainable parameters: one call in all for a model without frozen layers.

Choices, where Keras and PyTorch differ (the update rules are PyTorch's, so are the defaults
that go with them):
- Adam/AdamW add ``epsilon`` to the bias-corrected root of the second moment (PyTorch), so the
  default epsilon is PyTorch's 1e-8. ``Adam(weight_decay=...)`` adds ``weight_decay * w`` to the
  gradient (L2, PyTorch's Adam); ``AdamW`` decays the weights decoupled from the gradient, with
  PyTorch's default ``weight_decay=0.01``.
- ``SGD(weight_decay=...)`` adds ``weight_decay * w`` to the gradient before momentum (PyTorch).
- ``RMSprop`` has Keras' defaults (learning_rate 1e-3, rho 0.9) and PyTorch's update
  ``w -= lr * g / (sqrt(avg) + epsilon)`` with epsilon 1e-8; no momentum or centering.
- ``clipnorm`` scales the gradients of all trainable parameters together so that their global
  L2 norm is at most clipnorm (PyTorch's clip_grad_norm_); Keras clips each variable alone.
- ``learning_rate`` may also be given as ``lr``; it is a settable property, and the next step
  uses the new value (learning-rate schedules set it between epochs).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import ops
from .backends import CpuBackend
from .ops import _checks as check

Segments = Sequence[Tuple[int, int]]


class Optimizer:
    """Base class. ``build(size)`` allocates the state; ``apply(parameters, gradients, segments)``
    takes one step on the ``[start, stop)`` runs of the flat buffers listed in ``segments``."""

    default_learning_rate = 1e-3

    def __init__(self, learning_rate: Optional[float] = None, *, clipnorm: Optional[float] = None,
                 lr: Optional[float] = None):
        if learning_rate is not None and lr is not None:
            raise ValueError("lr: is an alias of learning_rate; pass only one of them")
        chosen = lr if lr is not None else learning_rate
        self.learning_rate = self.default_learning_rate if chosen is None else chosen
        self.clipnorm = None if clipnorm is None else check.real(clipnorm, "clipnorm", low=0.0, low_open=True)
        self.iterations = 0
        self.size: Optional[int] = None
        self._backend: Any = None

    @property
    def learning_rate(self) -> float:
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        if callable(value):
            raise TypeError("learning_rate: expected a number; for a schedule use "
                            "fusedtrain.callbacks.LearningRateScheduler")
        self._learning_rate = check.real(value, "learning_rate", low=0.0)

    lr = learning_rate

    @property
    def built(self) -> bool:
        return self.size is not None

    def build(self, size: int, backend: Any = None) -> None:
        """Allocates the state for a flat parameter buffer of ``size`` values (zeros), with the
        arrays of ``backend`` (fusedtrain.backends; the CPU when None): the model's device."""
        size = check.integer(size, "size", low=0)
        backend = backend if backend is not None else CpuBackend()
        if self.size is not None and self.size != size:
            raise ValueError(f"optimizer: this {type(self).__name__} already holds state for {self.size} "
                             f"parameters, and the model has {size}; give each model its own optimizer")
        if self.size is not None and backend.name != self._backend.name:
            raise ValueError(f"optimizer: this {type(self).__name__} holds state on {self._backend.name}, and the "
                             f"model is on {backend.name}; give each model its own optimizer")
        if self.size is None:
            self.size = size
            self._backend = backend
            self._xp = backend.xp
            # Where clipping stores the norm on a GPU, so that a step reads nothing back.
            self._norm = backend.scalar_slot()
            self._allocate(size)

    def _allocate(self, size: int) -> None:
        """Creates the state buffers (with ``self._xp``)."""

    @property
    def state(self) -> Dict[str, np.ndarray]:
        """The state buffers by name (the arrays themselves, not copies)."""
        return {}

    def apply(self, parameters: np.ndarray, gradients: np.ndarray, segments: Segments) -> None:
        """One step: clips the gradients of ``segments`` (if clipnorm), then updates each segment of
        ``parameters`` in place. ``gradients`` may be scaled in place by the clipping."""
        if self.size is None:
            self.build(parameters.size)
        if parameters.size != self.size or gradients.size != self.size:
            raise ValueError(f"parameters: expected {self.size} values (the size this optimizer was built "
                             f"for), got {parameters.size} and gradients {gradients.size}")
        if not segments:
            return
        whole = len(segments) == 1 and tuple(segments[0]) == (0, self.size)
        if self.clipnorm is not None:
            ops.clip_grad_norm(gradients if whole else [gradients[a:b] for a, b in segments], self.clipnorm,
                               norm_out=self._norm)
        self.iterations += 1
        for start, stop in segments:
            self._step(parameters if whole else parameters[start:stop],
                       gradients if whole else gradients[start:stop],
                       slice(None) if whole else slice(start, stop))

    def _step(self, parameters: np.ndarray, gradients: np.ndarray, part: slice) -> None:
        raise NotImplementedError

    def load_state(self, state: Dict[str, Any], iterations: int) -> None:
        """Restores a state saved from ``state`` (e.g. by a checkpoint): the buffers are copied
        in, and ``iterations`` (the step count Adam's bias correction uses) is set. The
        optimizer must be built; the names and sizes must be those of its own state."""
        if self.size is None:
            raise RuntimeError("load_state: the optimizer is not built; build(size) first")
        expected = self.state
        if set(state) != set(expected):
            raise ValueError(f"state: expected the buffers {sorted(expected)} of {type(self).__name__}, "
                             f"got {sorted(state)}")
        for name, target in expected.items():
            value = np.asarray(state[name])
            if value.dtype != np.float32 or value.shape != target.shape:
                raise ValueError(f"state[{name!r}]: expected float32 of shape {target.shape}, got "
                                 f"{value.dtype} of shape {value.shape}")
        iterations = check.integer(iterations, "iterations", low=0)
        for name, target in expected.items():
            self._backend.assign(target, state[name])
        self.iterations = iterations

    def get_config(self) -> Dict[str, Any]:
        return {"learning_rate": self.learning_rate, "clipnorm": self.clipnorm}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Optimizer":
        """A new optimizer (without state) from ``get_config()``'s dictionary."""
        return cls(**config)

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum (heavy-ball or Nesterov) and weight
    decay added to the gradient."""

    default_learning_rate = 0.01

    def __init__(self, learning_rate: Optional[float] = None, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, *, clipnorm: Optional[float] = None, lr: Optional[float] = None):
        super().__init__(learning_rate, clipnorm=clipnorm, lr=lr)
        self.momentum = check.real(momentum, "momentum", low=0.0)
        self.nesterov = check.flag(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.weight_decay = check.real(weight_decay, "weight_decay", low=0.0)
        self.velocity: Optional[np.ndarray] = None

    def _allocate(self, size):
        if self.momentum > 0.0:
            self.velocity = self._xp.zeros(size, dtype=np.float32)

    @property
    def state(self):
        return {} if self.velocity is None else {"velocity": self.velocity}

    def _step(self, parameters, gradients, part):
        velocity = None if self.velocity is None else self.velocity[part]
        ops.sgd_step(parameters, gradients, velocity, lr=self.learning_rate, momentum=self.momentum,
                     nesterov=self.nesterov, weight_decay=self.weight_decay)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm}


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is added to the gradient (L2)."""

    decoupled = False
    default_weight_decay = 0.0

    def __init__(self, learning_rate: Optional[float] = None, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, weight_decay: Optional[float] = None, *,
                 clipnorm: Optional[float] = None, lr: Optional[float] = None):
        super().__init__(learning_rate, clipnorm=clipnorm, lr=lr)
        self.beta_1 = check.real(beta_1, "beta_1", low=0.0, high=1.0, high_open=True)
        self.beta_2 = check.real(beta_2, "beta_2", low=0.0, high=1.0, high_open=True)
        self.epsilon = check.real(epsilon, "epsilon", low=0.0)
        decay = self.default_weight_decay if weight_decay is None else weight_decay
        self.weight_decay = check.real(decay, "weight_decay", low=0.0)
        self.m: Optional[np.ndarray] = None
        self.v: Optional[np.ndarray] = None

    def _allocate(self, size):
        self.m = self._xp.zeros(size, dtype=np.float32)
        self.v = self._xp.zeros(size, dtype=np.float32)

    @property
    def state(self):
        return {} if self.m is None else {"m": self.m, "v": self.v}

    def _step(self, parameters, gradients, part):
        ops.adam_step(parameters, gradients, self.m[part], self.v[part], step=self.iterations,
                      lr=self.learning_rate, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                      weight_decay=self.weight_decay, decoupled=self.decoupled)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm}


class AdamW(Adam):
    """Adam with decoupled weight decay: each step first scales the weights by
    ``1 - learning_rate * weight_decay`` (default 0.01, as PyTorch)."""

    decoupled = True
    default_weight_decay = 0.01


class RMSprop(Optimizer):
    """RMSprop: divides the gradient by a running root mean square of past gradients."""

    def __init__(self, learning_rate: Optional[float] = None, rho: float = 0.9, epsilon: float = 1e-8,
                 weight_decay: float = 0.0, *, clipnorm: Optional[float] = None, lr: Optional[float] = None):
        super().__init__(learning_rate, clipnorm=clipnorm, lr=lr)
        self.rho = check.real(rho, "rho", low=0.0, high=1.0)
        self.epsilon = check.real(epsilon, "epsilon", low=0.0)
        self.weight_decay = check.real(weight_decay, "weight_decay", low=0.0)
        self.square_avg: Optional[np.ndarray] = None

    def _allocate(self, size):
        self.square_avg = self._xp.zeros(size, dtype=np.float32)

    @property
    def state(self):
        return {} if self.square_avg is None else {"square_avg": self.square_avg}

    def _step(self, parameters, gradients, part):
        ops.rmsprop_step(parameters, gradients, self.square_avg[part], lr=self.learning_rate,
                         alpha=self.rho, eps=self.epsilon, weight_decay=self.weight_decay)

    def get_config(self):
        return {"learning_rate": self.learning_rate, "rho": self.rho, "epsilon": self.epsilon,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm}


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get(identifier: Union[str, Optimizer]) -> Optimizer:
    """A new optimizer with default arguments for a name ("sgd", "adam", "adamw", "rmsprop"), or
    the object itself."""
    return check.instance_or_named(identifier, "optimizer", Optimizer, _BY_NAME, "an Optimizer or one of",
                                   ignore_case=True)
