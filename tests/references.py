"""Float64 NumPy references shared by the test files (written independently of fusedtrain), and
the unaligned array layout that several of them pass."""

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


def unaligned(value):
    """A C-contiguous copy of ``value`` (of items over one byte) one byte past the start of a
    buffer: not aligned to its items (NumPy makes such views, e.g. np.frombuffer(data, offset=1))."""
    buffer = np.zeros(value.nbytes + 1, np.uint8)
    view = np.frombuffer(buffer, value.dtype, count=value.size, offset=1).reshape(value.shape)
    view.flags.writeable = True
    view[...] = value
    assert view.flags.c_contiguous and not view.flags.aligned
    return view
