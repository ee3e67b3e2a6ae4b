// Enumerations shared by the kernel API, the bindings and the per-element math.
#pragma once

namespace fusedtrain {

// Activation applied elementwise (and fused into the GEMM epilogue). The numeric values are
// part of the API: the Python bindings pass them as integers.
enum class Activation : int { None = 0, Relu = 1, LeakyRelu = 2, Sigmoid = 3, Tanh = 4, Gelu = 5 };

// How a loss reduces over its elements: the mean (over elements for mse and binary cross-entropy,
// over rows for softmax cross-entropy) or the sum.
enum class Reduction : int { Mean = 0, Sum = 1 };

}  // namespace fusedtrain
