// Activation functions and their derivatives, one struct per activation. The CPU loops, the GEMM
// epilogue and the CUDA kernels are templates over these structs, so the formulas live here once.
#pragma once
#include "common/fast_math.h"
#include "fusedtrain/types.h"

namespace fusedtrain {

namespace act {

// Each struct: forward(x, param) and backward(grad_output, x, param) = grad_output * f'(x).
// `param` is the negative slope of leaky_relu and ignored by the others.
struct Identity {
  FT_HD float forward(float x, float) { return x; }
  FT_HD float backward(float grad_output, float, float) { return grad_output; }
};

struct Relu {
  FT_HD float forward(float x, float) { return x > 0.0f ? x : 0.0f; }
  // The derivative at 0 is taken as 0, as PyTorch and Keras do.
  FT_HD float backward(float grad_output, float x, float) { return x > 0.0f ? grad_output : 0.0f; }
};

struct LeakyRelu {
  FT_HD float forward(float x, float slope) { return x > 0.0f ? x : slope * x; }
  FT_HD float backward(float grad_output, float x, float slope) {
    return x > 0.0f ? grad_output : slope * grad_output;
  }
};

struct Sigmoid {
  FT_HD float forward(float x, float) { return math::sigmoid(x); }
  FT_HD float backward(float grad_output, float x, float) {
    float s = math::sigmoid(x);
    return grad_output * s * (1.0f - s);
  }
};

struct Tanh {
  FT_HD float forward(float x, float) { return math::tanh(x); }
  FT_HD float backward(float grad_output, float x, float) {
    float t = math::tanh(x);
    return grad_output * (1.0f - t * t);
  }
};

// GELU in its tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3).
struct Gelu {
  static constexpr float kSqrt2OverPi = 0.7978845608028654f;
  static constexpr float kCubic = 0.044715f;
  FT_HD float forward(float x, float) {
    float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    return 0.5f * x * (1.0f + math::tanh(u));
  }
  // d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
  FT_HD float backward(float grad_output, float x, float) {
    float u = kSqrt2OverPi * (x + kCubic * x * x * x);
    float t = math::tanh(u);
    float du = kSqrt2OverPi * (1.0f + 3.0f * kCubic * x * x);
    return grad_output * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
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
