"""Weight initializers, by name or object, as Keras defines them. Each one draws from a NumPy
Generator that the model seeds, in float64, and returns float32: the same seed gives the same
weights on every machine."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Tuple, Union

import numpy as np

from .ops import _checks as check

# Keras draws its "normal" variance-scaling initializers from a normal truncated at two standard
# deviations; this is the standard deviation of the unit normal truncated to [-2, 2], by which
# the requested deviation is divided so that the truncated draw keeps it.
_TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


def _fans(shape: Tuple[int, ...]) -> Tuple[int, int]:
    """(fan_in, fan_out) of a kernel: a Dense kernel has shape (inputs, outputs)."""
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def _truncated_normal(rng: np.random.Generator, shape: Tuple[int, ...], stddev: float) -> np.ndarray:
    """Normal draws with |value| <= 2 stddev, redrawing the others (in the generator's order, so
    the result depends only on the seed)."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * stddev


class Initializer:
    """Base class: ``initializer(shape, rng)`` returns a float32 array of ``shape``."""

    def __call__(self, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.sample(tuple(shape), rng), dtype=np.float32)

    def sample(self, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> Dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class Zeros(Initializer):
    def sample(self, shape, rng):
        return np.zeros(shape)


class Ones(Initializer):
    def sample(self, shape, rng):
        return np.ones(shape)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = check.real(value, "value")

    def sample(self, shape, rng):
        return np.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        self.mean = check.real(mean, "mean")
        self.stddev = check.real(stddev, "stddev", low=0.0)

    def sample(self, shape, rng):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        self.minval = check.real(minval, "minval")
        self.maxval = check.real(maxval, "maxval")
        if self.maxval < self.minval:
            raise ValueError(f"maxval: expected a value >= minval ({self.minval}), got {self.maxval}")

    def sample(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class VarianceScaling(Initializer):
    """Draws with variance ``scale / fan`` where fan is fan_in, fan_out or their mean: from a
    truncated normal ("truncated_normal"), a normal ("untruncated_normal") or a uniform
    distribution on [-sqrt(3 scale / fan), sqrt(3 scale / fan)]."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"):
        self.scale = check.real(scale, "scale", low=0.0, low_open=True)
        self.mode = check.choice(mode, "mode", {name: name for name in self.MODES})
        self.distribution = check.choice(distribution, "distribution",
                                         {name: name for name in self.DISTRIBUTIONS})

    def sample(self, shape, rng):
        fan_in, fan_out = _fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, fan)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), shape)
        return _truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_NORMAL_STDDEV)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class GlorotUniform(VarianceScaling):
    def __init__(self):
        super().__init__(1.0, "fan_avg", "uniform")

    def get_config(self):
        return {}


class GlorotNormal(VarianceScaling):
    def __init__(self):
        super().__init__(1.0, "fan_avg", "truncated_normal")

    def get_config(self):
        return {}


class HeNormal(VarianceScaling):
    def __init__(self):
        super().__init__(2.0, "fan_in", "truncated_normal")

    def get_config(self):
        return {}


class HeUniform(VarianceScaling):
    def __init__(self):
        super().__init__(2.0, "fan_in", "uniform")

    def get_config(self):
        return {}


class LecunNormal(VarianceScaling):
    def __init__(self):
        super().__init__(1.0, "fan_in", "truncated_normal")

    def get_config(self):
        return {}


class LecunUniform(VarianceScaling):
    def __init__(self):
        super().__init__(1.0, "fan_in", "uniform")

    def get_config(self):
        return {}


_BY_NAME: Dict[str, Callable[[], Initializer]] = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_normal": HeNormal,
    "he_uniform": HeUniform,
    "lecun_normal": LecunNormal,
    "lecun_uniform": LecunUniform,
}


# The concrete initializers by class name: the only ones a model file may name (the base class
# Initializer draws nothing).
CLASSES: Dict[str, type] = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, RandomNormal, RandomUniform, VarianceScaling, GlorotUniform, GlorotNormal, HeNormal,
    HeUniform, LecunNormal, LecunUniform)}


def get(identifier: Union[str, Initializer]) -> Initializer:
    """The initializer named by ``identifier`` (with its default arguments), or the object itself."""
    return check.instance_or_named(identifier, "initializer", Initializer, _BY_NAME, "an Initializer or one of")


# Keras' function-style names, e.g. fusedtrain.initializers.random_normal(stddev=0.1).
zeros = Zeros
ones = Ones
constant = Constant
random_normal = RandomNormal
random_uniform = RandomUniform
glorot_uniform = GlorotUniform
glorot_normal = GlorotNormal
he_normal = HeNormal
he_uniform = HeUniform
lecun_normal = LecunNormal
lecun_uniform = LecunUniform
