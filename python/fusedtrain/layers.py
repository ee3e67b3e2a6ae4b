"""Layers of a Sequential model: Dense, Dropout, activation layers and Normalization.

A layer holds no arrays of its own: its parameters (``kernel`` of shape (inputs, units) as in
Keras, and ``bias``) and their gradients are views into the model's flat buffers, and the
per-batch arrays it writes (``allocate``) are created once per training run and reused by every
batch. ``forward`` keeps what ``backward`` needs: the *_grad kernels take the forward's input,
so a Dense layer keeps its pre-activation (with relu or leaky_relu only its output, at which
their derivative is the same). The arrays are those of the model's backend (``_backend``:
NumPy on the CPU, CuPy on a GPU); a layer names no array library."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import initializers, ops, regularizers
from .backends import CpuBackend
from .data import features, to_float32
from .ops import _checks as check

# Activations the GEMM epilogue applies, and so Dense layers at inference; softmax is row-wise
# and runs as a separate kernel after the GEMM.
_FUSED_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh", "gelu")
ACTIVATIONS = _FUSED_ACTIVATIONS + ("softmax",)
# The slope of "leaky_relu" given by name (PyTorch's default; Keras uses 0.2 for the function and
# 0.3 for the layer). LeakyReLU(negative_slope=...) sets another.
DEFAULT_NEGATIVE_SLOPE = 0.01


def _physical_memory() -> Optional[int]:
    """The machine's physical memory in bytes, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _require_memory(layer: "Layer", shapes: List[Tuple[str, Tuple[int, ...]]], arguments: str) -> None:
    """ValueError naming ``arguments`` when one parameter of ``shapes`` is larger than the
    machine's memory: the model keeps parameters, gradients and optimizer state of that size, so
    such a layer can never be built, and NumPy's MemoryError would not say which setting to change."""
    memory = _physical_memory()
    if memory is None:
        return
    for name, shape in shapes:
        size = 4
        for extent in shape:
            size *= extent
        if size > memory:
            gib = 2.0 ** 30
            raise ValueError(f"{arguments}: layer {layer.name!r} would hold a {name} of shape {shape}, "
                             f"{size / gib:.4g} GiB of float32, more than this machine's {memory / gib:.4g} GiB "
                             f"of memory")


def _activation_name(activation: Optional[str]) -> Optional[str]:
    if activation is None or activation == "linear":
        return None
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        options = ", ".join(repr(name) for name in ("linear",) + ACTIVATIONS)
        raise ValueError(f"activation: expected None or one of {options}, got {activation!r}")
    return activation


def activate(name: str, negative_slope: float, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``name``(x) into ``out`` (which may be x itself)."""
    if name == "softmax":
        return ops.softmax(x, out=out)
    if name == "leaky_relu":
        return ops.leaky_relu(x, negative_slope, out=out)
    return getattr(ops, name)(x, out=out)


def _derivative_from_output(name: Optional[str], negative_slope: float) -> bool:
    """Whether ``name``'s derivative can be taken at its output instead of its input: true for
    relu, and for leaky_relu with a slope >= 0, whose derivative depends only on whether the
    input is > 0, and whose output is > 0 exactly where the input is (NaN and -0.0 included)."""
    return name == "relu" or (name == "leaky_relu" and negative_slope >= 0.0)


def activation_grad(name: str, negative_slope: float, grad_output: np.ndarray, x: np.ndarray,
                    out: np.ndarray) -> np.ndarray:
    """The gradient through ``name`` at the forward input ``x``, into ``out``. Elementwise
    activations allow ``out is grad_output``; softmax allows ``out is x``."""
    if name == "softmax":
        return ops.softmax_grad(grad_output, x, out=out)
    if name == "leaky_relu":
        return ops.leaky_relu_grad(grad_output, x, negative_slope, out=out)
    return getattr(ops, f"{name}_grad")(grad_output, x, out=out)


class Layer:
    """Base class. A model calls, in order: ``output_dim_for(input_dim)`` and
    ``parameter_shapes(input_dim)`` to lay out its flat buffers, ``build(input_dim, parameters,
    gradients)`` with the views, ``initialize(rng)``, then per training run ``allocate(rows,
    training)`` and per batch ``forward`` / ``backward``."""

    base_name = "layer"

    def __init__(self, name: Optional[str] = None, trainable: bool = True):
        self.name = None if name is None else check.name(name, "name")
        self.trainable = trainable
        self.built = False
        self.input_dim: Optional[int] = None
        self.output_dim: Optional[int] = None
        self._parameters: Dict[str, np.ndarray] = {}
        self._gradients: Dict[str, np.ndarray] = {}
        # The model this layer was added to: a layer's views point into one model's buffers,
        # which its backend owns (the model sets it when it builds).
        self._model = None
        self._backend = CpuBackend()

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        self._trainable = check.flag(value, "trainable")

    def weight_problem(self, name: str, values: np.ndarray) -> Optional[str]:
        """What is wrong with ``values`` (finite float32, of the right shape) as this layer's
        parameter ``name``, or None: the check every path that sets weights applies (set_weights,
        weight files, model files, checkpoints)."""
        return None

    # Layout -----------------------------------------------------------------------------------

    def output_dim_for(self, input_dim: int) -> int:
        return input_dim

    def parameter_shapes(self, input_dim: int) -> List[Tuple[str, Tuple[int, ...]]]:
        """(name, shape) of each parameter, in the order of get_weights."""
        return []

    def build(self, input_dim: int, parameters: Dict[str, np.ndarray], gradients: Dict[str, np.ndarray]) -> None:
        """Takes the views of the model's buffers that hold this layer's parameters/gradients."""
        self.input_dim = input_dim
        self.output_dim = self.output_dim_for(input_dim)
        self._parameters = dict(parameters)
        self._gradients = dict(gradients)
        self.built = True

    def initialize(self, rng: np.random.Generator) -> None:
        """Fills the parameters with their initial values drawn from ``rng``."""

    @property
    def weights(self) -> List[np.ndarray]:
        """The parameter arrays (views of the model's flat buffer, not copies)."""
        return list(self._parameters.values())

    @property
    def gradients(self) -> List[np.ndarray]:
        return list(self._gradients.values())

    def count_params(self) -> int:
        return sum(value.size for value in self._parameters.values())

    @property
    def final_activation(self) -> Optional[str]:
        """The activation this layer ends with (a loss may fold sigmoid/softmax into itself)."""
        return None

    # Per-batch work ---------------------------------------------------------------------------

    def allocate(self, rows: int, training: bool) -> Dict[str, np.ndarray]:
        """The arrays forward/backward write for batches of up to ``rows`` rows."""
        return {}

    def forward(self, x: np.ndarray, buffers: Dict[str, np.ndarray], training: bool, step: int,
                apply_activation: bool = True) -> np.ndarray:
        """The output for the batch ``x`` (a view of ``buffers`` or x itself). ``step`` numbers
        the training batch (dropout masks); ``apply_activation=False`` stops before the
        layer's final activation (it is folded into the loss)."""
        raise NotImplementedError

    def backward(self, grad_output: np.ndarray, x: np.ndarray, buffers: Dict[str, np.ndarray],
                 grad_input: Optional[np.ndarray], apply_activation: bool = True) -> None:
        """Writes the parameter gradients (if trainable) and the gradient with respect to ``x``
        into ``grad_input`` (skipped when None). May overwrite ``grad_output``."""
        raise NotImplementedError

    def regularization_penalty(self) -> float:
        return 0.0

    def get_config(self) -> Dict[str, Any]:
        """The constructor's arguments (and ``trainable``) as JSON-compatible values: what a
        model file stores to rebuild the layer with ``from_config``."""
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: Dict[str, Any]) -> "Layer":
        """A new layer from ``get_config()``'s dictionary."""
        config = dict(config)
        trainable = config.pop("trainable", True)
        layer = cls(**config)
        layer.trainable = trainable
        return layer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def _serialize(value: Any) -> Optional[Dict[str, Any]]:
    """An initializer or regularizer as {"class_name": ..., "config": ...} (None stays None)."""
    if value is None:
        return None
    return {"class_name": type(value).__name__, "config": value.get_config()}


def _deserialize(value: Any, module: Any, name: str) -> Any:
    """The object that ``_serialize`` described, or the one a name (e.g. "he_normal") stands for.
    Only the concrete classes of ``module.CLASSES`` may be named: a base class (Initializer,
    Regularizer) would fail later, in the middle of training or saving."""
    if not isinstance(value, dict):
        return module.get(value)
    if set(value) != {"class_name", "config"} or not isinstance(value["config"], dict):
        raise ValueError(f"{name}: expected a name or {{'class_name': ..., 'config': {{...}}}}, got {check.shown(value)}")
    class_name = value["class_name"]
    # The class names, and Keras' function-style aliases of the same classes ("he_normal").
    found = getattr(module, class_name, None) if isinstance(class_name, str) else None
    if found not in module.CLASSES.values():
        known = isinstance(found, type)
        what = (f"{check.shown(class_name)} is an abstract class, which a file cannot name" if known
                else f"unknown class {check.shown(class_name)} (not in {module.__name__})")
        raise ValueError(f"{name}: {what}; expected one of {', '.join(module.CLASSES)}")
    return found(**value["config"])


def _input_dim_from_shape(input_shape: Any, input_dim: Optional[int]) -> int:
    """Keras' input_shape=(features,) as an input size; a sample here is a vector of features."""
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 1:
        raise ValueError(f"input_shape: expected (features,), one number per sample vector, got {input_shape!r}; "
                         f"fusedtrain's layers take 2-D data (samples, features)")
    dim = check.integer(input_shape[0], "input_shape[0]", low=1)
    if input_dim is not None and check.integer(input_dim, "input_dim", low=1) != dim:
        raise ValueError(f"input_shape, input_dim: they disagree ({input_shape!r} and {input_dim}); give one")
    return dim


class Dense(Layer):
    """``activation(x @ kernel + bias)``: a fully connected layer with ``units`` outputs.
    ``input_dim`` (or Keras' ``input_shape=(features,)``) declares the model's input size on
    a first layer."""

    base_name = "dense"

    def __init__(self, units: int, activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: Any = "glorot_uniform", bias_initializer: Any = "zeros",
                 kernel_regularizer: Any = None, input_dim: Optional[int] = None,
                 name: Optional[str] = None, trainable: bool = True, input_shape: Any = None):
        super().__init__(name=name, trainable=trainable)
        self.units = check.integer(units, "units", low=1)
        self.activation = _activation_name(activation)
        self.use_bias = check.flag(use_bias, "use_bias")
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        if input_shape is not None:
            input_dim = _input_dim_from_shape(input_shape, input_dim)
        self.declared_input_dim = None if input_dim is None else check.integer(input_dim, "input_dim", low=1)
        self.negative_slope = DEFAULT_NEGATIVE_SLOPE
        self._regularizer_scratch: Optional[np.ndarray] = None

    def output_dim_for(self, input_dim):
        return self.units

    def parameter_shapes(self, input_dim):
        shapes = [("kernel", (input_dim, self.units))]
        if self.use_bias:
            shapes.append(("bias", (self.units,)))
        _require_memory(self, shapes, "units, input_dim")
        return shapes

    def build(self, input_dim, parameters, gradients):
        if self.declared_input_dim is not None and self.declared_input_dim != input_dim:
            raise ValueError(f"input_dim: layer {self.name!r} was declared with input_dim="
                             f"{self.declared_input_dim}, but its input has {input_dim} features")
        super().build(input_dim, parameters, gradients)
        if self.kernel_regularizer is not None:
            self._regularizer_scratch = self._backend.xp.empty((input_dim, self.units), dtype=np.float32)

    @property
    def kernel(self) -> np.ndarray:
        return self._parameters["kernel"]

    @property
    def bias(self) -> Optional[np.ndarray]:
        return self._parameters.get("bias")

    @property
    def kernel_grad(self) -> np.ndarray:
        return self._gradients["kernel"]

    @property
    def bias_grad(self) -> Optional[np.ndarray]:
        return self._gradients.get("bias")

    @property
    def final_activation(self):
        return self.activation

    def initialize(self, rng):
        self._backend.assign(self.kernel, self.kernel_initializer(tuple(self.kernel.shape), rng))
        if self.use_bias:
            self._backend.assign(self.bias, self.bias_initializer(tuple(self.bias.shape), rng))

    def allocate(self, rows, training):
        xp = self._backend.xp
        pre = xp.empty((rows, self.units), dtype=np.float32)
        if not training or self.activation is None:
            return {"pre": pre, "out": pre}
        return {"pre": pre, "out": xp.empty((rows, self.units), dtype=np.float32)}

    def forward(self, x, buffers, training, step, apply_activation=True):
        rows = x.shape[0]
        activation = self.activation if apply_activation else None
        if not training:
            out = buffers["out"][:rows]
            fused = activation if activation in _FUSED_ACTIVATIONS else None
            ops.matmul(x, self.kernel, bias=self.bias, activation=fused,
                       negative_slope=self.negative_slope, out=out)
            if activation == "softmax":
                ops.softmax(out, out=out)
            return out
        if _derivative_from_output(activation, self.negative_slope):
            # The GEMM epilogue applies the activation, and the backward pass takes the
            # derivative at the output, which equals the derivative at the input here.
            out = ops.matmul(x, self.kernel, bias=self.bias, activation=activation,
                             negative_slope=self.negative_slope, out=buffers["out"][:rows])
            buffers["derivative_at"] = buffers["out"]
            return out
        pre = ops.matmul(x, self.kernel, bias=self.bias, out=buffers["pre"][:rows])
        buffers["derivative_at"] = buffers["pre"]
        if activation is None:
            return pre
        return activate(activation, self.negative_slope, pre, buffers["out"][:rows])

    def backward(self, grad_output, x, buffers, grad_input, apply_activation=True):
        rows = x.shape[0]
        grad_pre = grad_output
        if self.activation is not None and apply_activation:
            at = buffers["derivative_at"][:rows]
            # softmax_grad may write over its input, the elementwise ones over grad_output.
            target = at if self.activation == "softmax" else grad_output
            grad_pre = activation_grad(self.activation, self.negative_slope, grad_output, at, target)
        if self.trainable:
            ops.matmul(x, grad_pre, trans_a=True, out=self.kernel_grad)
            if self.use_bias:
                ops.bias_grad(grad_pre, out=self.bias_grad)
            if self.kernel_regularizer is not None:
                self.kernel_regularizer.add_gradient(self.kernel, self.kernel_grad, self._regularizer_scratch)
        if grad_input is not None:
            ops.matmul(grad_pre, self.kernel, trans_b=True, out=grad_input)

    def regularization_penalty(self):
        if self.kernel_regularizer is None:
            return 0.0
        return self.kernel_regularizer.penalty(self.kernel, self._regularizer_scratch)

    def get_config(self):
        config = {**super().get_config(), "units": self.units, "activation": self.activation,
                  "use_bias": self.use_bias, "kernel_initializer": _serialize(self.kernel_initializer),
                  "bias_initializer": _serialize(self.bias_initializer),
                  "kernel_regularizer": _serialize(self.kernel_regularizer),
                  "input_dim": self.declared_input_dim}
        if self.activation == "leaky_relu":
            # Not a constructor argument: an attribute a user may set on the layer.
            config["negative_slope"] = self.negative_slope
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        negative_slope = config.pop("negative_slope", DEFAULT_NEGATIVE_SLOPE)
        for key in ("kernel_initializer", "bias_initializer"):
            if key in config:
                config[key] = _deserialize(config[key], initializers, key)
        if "kernel_regularizer" in config:
            config["kernel_regularizer"] = _deserialize(config["kernel_regularizer"], regularizers,
                                                        "kernel_regularizer")
        layer = super().from_config(config)
        layer.negative_slope = check.real(negative_slope, "negative_slope")
        return layer

    def __repr__(self):
        return f"Dense({self.units}, activation={self.activation!r}, name={self.name!r})"


class Dropout(Layer):
    """In training, zeroes each input with probability ``rate`` and scales the others by
    1 / (1 - rate); the identity at inference. The masks come from a counter-based generator
    keyed by a seed (``seed``, or one the model derives from its own seed for each fit) and the
    training step, so a seeded run is reproducible."""

    base_name = "dropout"

    def __init__(self, rate: float, seed: Optional[int] = None, name: Optional[str] = None):
        super().__init__(name=name, trainable=True)
        self.rate = check.real(rate, "rate", low=0.0, high=1.0, high_open=True)
        self.seed = None if seed is None else check.integer(seed, "seed", low=0, high=2**64 - 1)
        # The seed the model sets for the current fit when ``seed`` is None.
        self.run_seed = 0

    def allocate(self, rows, training):
        if not training or self.rate == 0.0:
            return {}
        xp = self._backend.xp
        return {"out": xp.empty((rows, self.input_dim), dtype=np.float32),
                "mask": xp.empty((rows, self.input_dim), dtype=np.uint8)}

    def forward(self, x, buffers, training, step, apply_activation=True):
        if not training or self.rate == 0.0:
            return x
        rows = x.shape[0]
        seed = self.run_seed if self.seed is None else self.seed
        out, _ = ops.dropout(x, self.rate, seed=seed, step=step, out=buffers["out"][:rows],
                             mask_out=buffers["mask"][:rows])
        return out

    def backward(self, grad_output, x, buffers, grad_input, apply_activation=True):
        if grad_input is None:
            return
        if "mask" not in buffers:
            # The forward pass was the identity (rate 0, or dropout inactive for this pass).
            self._backend.xp.copyto(grad_input, grad_output)
            return
        ops.dropout_grad(grad_output, buffers["mask"][:x.shape[0]], self.rate, out=grad_input)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}

    def __repr__(self):
        return f"Dropout({self.rate}, name={self.name!r})"


class Activation(Layer):
    """Applies an activation by name: "relu", "leaky_relu", "sigmoid", "tanh", "gelu",
    "softmax" (row-wise) or "linear"."""

    base_name = "activation"

    def __init__(self, activation: str, negative_slope: float = DEFAULT_NEGATIVE_SLOPE,
                 name: Optional[str] = None):
        super().__init__(name=name, trainable=True)
        self.activation = _activation_name(activation)
        self.negative_slope = check.real(negative_slope, "negative_slope")

    @property
    def final_activation(self):
        return self.activation

    def allocate(self, rows, training):
        if self.activation is None:
            return {}
        return {"out": self._backend.xp.empty((rows, self.input_dim), dtype=np.float32)}

    def forward(self, x, buffers, training, step, apply_activation=True):
        if self.activation is None or not apply_activation:
            return x
        return activate(self.activation, self.negative_slope, x, buffers["out"][:x.shape[0]])

    def backward(self, grad_output, x, buffers, grad_input, apply_activation=True):
        if grad_input is None:
            return
        if self.activation is None or not apply_activation:
            self._backend.xp.copyto(grad_input, grad_output)
            return
        activation_grad(self.activation, self.negative_slope, grad_output, x, grad_input)

    def get_config(self):
        config = super().get_config()
        # The subclasses (ReLU, Tanh, ...) take no activation argument: their class says it.
        if type(self) is Activation:
            config["activation"] = self.activation
        if self.activation == "leaky_relu":
            config["negative_slope"] = self.negative_slope
        return config

    def __repr__(self):
        return f"{type(self).__name__}({self.activation!r}, name={self.name!r})"


class ReLU(Activation):
    base_name = "relu"

    def __init__(self, name: Optional[str] = None):
        super().__init__("relu", name=name)


class LeakyReLU(Activation):
    base_name = "leaky_relu"

    def __init__(self, negative_slope: float = DEFAULT_NEGATIVE_SLOPE, name: Optional[str] = None):
        super().__init__("leaky_relu", negative_slope=negative_slope, name=name)


class Sigmoid(Activation):
    base_name = "sigmoid"

    def __init__(self, name: Optional[str] = None):
        super().__init__("sigmoid", name=name)


class Tanh(Activation):
    base_name = "tanh"

    def __init__(self, name: Optional[str] = None):
        super().__init__("tanh", name=name)


class GELU(Activation):
    base_name = "gelu"

    def __init__(self, name: Optional[str] = None):
        super().__init__("gelu", name=name)


class Softmax(Activation):
    base_name = "softmax"

    def __init__(self, name: Optional[str] = None):
        super().__init__("softmax", name=name)


class Normalization(Layer):
    """Standardises each feature: ``(x - mean) / max(sqrt(variance), epsilon)``, as Keras'
    ``Normalization`` does. ``mean`` and ``variance`` (one value per feature) are the model's
    parameters "mean" and "variance": they live in its flat buffer and are saved, loaded and
    returned by get_weights like any weight, but they are statistics of the data, never trained
    (the layer is always frozen). Pass them to the constructor or compute them with
    ``adapt(x)``. Until then, and in a model rebuilt from a file until its weights are loaded,
    the layer holds mean 0 and variance 1: the identity.

    As the first layer it lets a saved model take raw features: the scaling travels with the
    weights."""

    base_name = "normalization"

    def __init__(self, mean: Any = None, variance: Any = None, epsilon: float = 1e-7,
                 name: Optional[str] = None):
        super().__init__(name=name, trainable=False)
        if (mean is None) != (variance is None):
            raise ValueError("mean, variance: give both or neither (adapt(x) computes them from data)")
        self.epsilon = check.real(epsilon, "epsilon", low=0.0, low_open=True)
        self.declared_input_dim: Optional[int] = None
        self._statistics: Optional[Tuple[np.ndarray, np.ndarray]] = None
        if mean is not None:
            self._set_statistics(_statistic(mean, "mean"), _statistic(variance, "variance"))

    @property
    def trainable(self) -> bool:
        return False

    @trainable.setter
    def trainable(self, value: bool) -> None:
        if check.flag(value, "trainable"):
            raise ValueError("trainable: a Normalization layer holds statistics of the data, which are not "
                             "trained; adapt(x) recomputes them")

    def _set_statistics(self, mean: np.ndarray, variance: np.ndarray) -> None:
        if mean.shape != variance.shape:
            raise ValueError(f"variance: expected one value per feature like mean, shape {mean.shape}, got "
                             f"shape {variance.shape}")
        problem = self.weight_problem("variance", variance)
        if problem:
            raise ValueError(f"variance: {problem}")
        if self.built:
            if mean.shape[0] != self.input_dim:
                raise ValueError(f"x: the layer is built for {self.input_dim} features, got {mean.shape[0]}")
            self._backend.assign(self.mean, mean)
            self._backend.assign(self.variance, variance)
            return
        self._statistics = (mean, variance)
        self.declared_input_dim = mean.shape[0]

    def weight_problem(self, name, values):
        # The square root of a negative variance would make every output NaN.
        if name == "variance" and (values < 0).any():
            index = int(np.argmax(values < 0))
            return f"must be >= 0, got {values.flat[index]:g} at index {index}"
        return None

    def adapt(self, x: Any) -> None:
        """Sets mean and variance to those of each column of ``x`` (samples, features): the
        population variance, computed in float64."""
        data = features(x, "x")
        self._set_statistics(data.mean(axis=0, dtype=np.float64).astype(np.float32),
                             data.var(axis=0, dtype=np.float64).astype(np.float32))

    @property
    def mean(self) -> np.ndarray:
        return self._parameters["mean"]

    @property
    def variance(self) -> np.ndarray:
        return self._parameters["variance"]

    def parameter_shapes(self, input_dim):
        shapes = [("mean", (input_dim,)), ("variance", (input_dim,))]
        _require_memory(self, shapes, "input_dim")
        return shapes

    def build(self, input_dim, parameters, gradients):
        if self.declared_input_dim is not None and self.declared_input_dim != input_dim:
            raise ValueError(f"input_dim: layer {self.name!r} holds statistics of {self.declared_input_dim} "
                             f"features, but its input has {input_dim}")
        super().build(input_dim, parameters, gradients)

    def initialize(self, rng):
        mean, variance = self._statistics if self._statistics is not None else (0.0, 1.0)
        self._backend.assign(self.mean, mean)
        self._backend.assign(self.variance, variance)

    def allocate(self, rows, training):
        xp = self._backend.xp
        return {"out": xp.empty((rows, self.input_dim), dtype=np.float32),
                "scale": xp.empty(self.input_dim, dtype=np.float32)}

    def forward(self, x, buffers, training, step, apply_activation=True):
        # The scale is recomputed per batch (one value per feature) so that set_weights and
        # load_weights take effect at once.
        xp = self._backend.xp
        scale = buffers["scale"]
        xp.sqrt(self.variance, out=scale)
        xp.maximum(scale, np.float32(self.epsilon), out=scale)
        xp.reciprocal(scale, out=scale)
        out = buffers["out"][:x.shape[0]]
        xp.subtract(x, self.mean, out=out)
        xp.multiply(out, scale, out=out)
        return out

    def backward(self, grad_output, x, buffers, grad_input, apply_activation=True):
        if grad_input is not None:
            self._backend.xp.multiply(grad_output, buffers["scale"], out=grad_input)

    def get_config(self):
        # mean and variance are weights (tensors in a model file), not settings.
        return {**super().get_config(), "epsilon": self.epsilon}

    def __repr__(self):
        return f"Normalization(name={self.name!r})"


def _statistic(values: Any, name: str) -> np.ndarray:
    """A mean or variance argument: a non-empty 1-D array of finite numbers, as float32."""
    array = to_float32(values, name)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: expected one value per feature (a non-empty 1-D array), got shape {array.shape}")
    return np.array(array)
