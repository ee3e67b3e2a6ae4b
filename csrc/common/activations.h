// Activation functions and their derivatives, one struct per activation. The CPU loops, the GEMM
// epilogue and the CUDA kernels are templates over these structs, so the formulas live here once.
#pragma once
#include "common/fast_math.h"
#include "fusedtrain/types.h"

namespace fusedtrain {

namespace act {

// The leaves the formulas call unqualified: these for float, cpu/vec8.h's for its vector.
using math::abs_value;
using math::exp_neg_abs;
using math::select;

// Each struct: forward(x, param) and backward(grad_output, x, param) = grad_output * f'(x),
// templates over the number type as the math they call (float, or the CPU's eight-lane vector).
// `param` is the negative slope of leaky_relu and ignored by the others.
struct Identity {
  template <class T>
  FT_HD T forward(T x, float) { return x; }
  template <class T>
  FT_HD T backward(T grad_output, T, float) { return grad_output; }
};

// The forward selects on x < 0 so that NaN passes through, as in NumPy and PyTorch.
struct Relu {
  template <class T>
  FT_HD T forward(T x, float) { return select(x < 0.0f, T(0.0f), x); }
  // The derivative at 0 is taken as 0, as PyTorch and Keras do.
  template <class T>
  FT_HD T backward(T grad_output, T x, float) { return select(x > 0.0f, grad_output, T(0.0f)); }
};

struct LeakyRelu {
  template <class T>
  FT_HD T forward(T x, float slope) { return select(x < 0.0f, slope * x, x); }
  template <class T>
  FT_HD T backward(T grad_output, T x, float slope) { return select(x > 0.0f, grad_output, slope * grad_output); }
};

struct Sigmoid {
  template <class T>
  FT_HD T forward(T x, float) { return math::sigmoid(x); }
  template <class T>
  FT_HD T backward(T grad_output, T x, float) { return grad_output * math::sigmoid_derivative(x); }
};

struct Tanh {
  template <class T>
  FT_HD T forward(T x, float) { return math::tanh(x); }
  template <class T>
  FT_HD T backward(T grad_output, T x, float) { return grad_output * math::tanh_derivative(x); }
};

// GELU in its tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Computed as
// x sigmoid(2u), the same function (1 + tanh(u) = 2 sigmoid(2u)): one exponential, and no
// cancellation in 1 + tanh(u) for negative x, where GELU is small.
struct Gelu {
  static constexpr float kSqrt2OverPi = 0.7978845608028654f;
  static constexpr float kCubic = 0.044715f;
  // Below x = -20 the product underflows to -0 in float; selecting -0 there also gives the limit
  // at x = -inf, where the product would be -inf * 0 = NaN.
  template <class T>
  FT_HD T forward(T x, float) {
    T two_u = 2.0f * kSqrt2OverPi * (x + kCubic * x * x * x);
    T y = x * math::sigmoid(two_u);
    return select(x < -20.0f, T(-0.0f), y);
  }
  // d/dx x sigmoid(2u) = sigmoid(2u) + x sigmoid'(2u) 2 du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
  // Beyond |x| = 20 the slope is exactly 1 or 0 in float; clamping there keeps 0 * inf (from
  // x^2 overflowing) out of the product for huge |x|.
  template <class T>
  FT_HD T backward(T grad_output, T x, float) {
    x = math::clampf(x, -20.0f, 20.0f);
    T two_u = 2.0f * kSqrt2OverPi * (x + kCubic * x * x * x);
    T two_du = 2.0f * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    T e = exp_neg_abs(two_u);
    T inv = 1.0f / (1.0f + e);
    T sigmoid = select(two_u < 0.0f, e, T(1.0f)) * inv;  // the two forms of math::sigmoid ...
    T sigmoid_derivative = e * inv * inv;                 // ... and sigmoid_derivative, sharing e
    T slope = sigmoid + x * sigmoid_derivative * two_du;
    return grad_output * slope;
  }
};

}  // namespace act

// Calls `body(ActStruct{})` with the struct that matches `activation`: one switch outside the
// loops, so each loop is compiled (and vectorized) for one activation.
template <class Body>
inline void with_activation(Activation activation, Body&& body) {
  switch (activation) {
    case Activation::Relu: body(act::Relu{}); break;
    case Activation::LeakyRelu: body(act::LeakyRelu{}); break;
    case Activation::Sigmoid: body(act::Sigmoid{}); break;
    case Activation::Tanh: body(act::Tanh{}); break;
    case Activation::Gelu: body(act::Gelu{}); break;
    case Activation::None: default: body(act::Identity{}); break;
  }
}

}  // namespace fusedtrain
