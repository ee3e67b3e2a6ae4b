"""fusedtrain.ops: one function per kernel. NumPy float32 arrays run on the CPU kernels, CuPy
arrays on the CUDA kernels (launched on CuPy's current stream; only the ops that return a
Python number wait for it). Every op checks its arguments and raises TypeError/ValueError
naming the one that is wrong, including an array of the other library than the rest; none
converts, copies or moves an array behind the caller's back. Outputs go to ``out=`` when given
(checked, written in place) or to a new array of the inputs' library."""

from .activations import (gelu, gelu_grad, leaky_relu, leaky_relu_grad, relu, relu_grad, sigmoid,
                          sigmoid_grad, softmax, softmax_grad, tanh, tanh_grad)
from .dropout import dropout, dropout_grad
from .linalg import matmul
from .losses import binary_cross_entropy, mse, softmax_cross_entropy
from .optimizers import adam_step, clip_grad_norm, rmsprop_step, sgd_step
from .reductions import accuracy, argmax, bias_grad

__all__ = [
    "matmul",
    "relu", "relu_grad", "leaky_relu", "leaky_relu_grad", "sigmoid", "sigmoid_grad",
    "tanh", "tanh_grad", "gelu", "gelu_grad", "softmax", "softmax_grad",
    "mse", "binary_cross_entropy", "softmax_cross_entropy",
    "bias_grad", "argmax", "accuracy",
    "sgd_step", "adam_step", "rmsprop_step", "clip_grad_norm",
    "dropout", "dropout_grad",
]
