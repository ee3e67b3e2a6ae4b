"""Float64 NumPy references shared by the test files (written independently of fusedtrain)."""

import math

import numpy as np


def reference_activation(name, z, slope=0.01):
    """The activation `name` (None for the identity) of float64 z; softmax is row-wise."""
    if name is None:
        return z
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, slope * z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "tanh":
        return np.tanh(z)
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
    if name == "softmax":
        exp = np.exp(z - z.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    raise ValueError(name)
