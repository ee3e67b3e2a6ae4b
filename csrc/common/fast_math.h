// exp, tanh, sigmoid, log1p and row reductions written with branch-free arithmetic only, so that
// the CPU loops vectorize and the CUDA kernels compute the same values as the CPU (up to the
// fused multiply-adds each compiler forms, and to the exponential: the AVX2 build takes
// exp(-|x|) from cpu/vec8.h's table, relative error below 4e-7). sigmoid, tanh and their
// derivatives are templates over the number type: float here and in CUDA, and cpu/vec8.h's
// eight-lane vector, for which the leaves they call unqualified (select, abs_value,
// exp_neg_abs) have their own overloads.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace fusedtrain::math {

FT_HD float bits_to_float(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

// `condition ? if_true : if_false`, as a function so that vector types can overload it.
FT_HD float select(bool condition, float if_true, float if_false) { return condition ? if_true : if_false; }
FT_HD float abs_value(float x) { return fabsf(x); }

// NaN passes through, as neither comparison holds for it.
template <class T>
FT_HD T clampf(T x, float lo, float hi) { return select(x < lo, T(lo), select(x > hi, T(hi), x)); }

// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and |r| <= ln(2)/2; exp(r) by its Taylor
// series to r^7 (relative error below 2e-7 on that interval). Below -87 the result is 0: the
// true value is under 1.7e-38, and returning 0 keeps denormals (slow on x86) out of every
// caller. Above 88 it saturates at exp(88) ~ 1.65e38, so that 2^n stays a finite float. NaN
// needs no test: the clamp passes it through and it propagates into p.
FT_HD float exp(float x) {
  const float input = x;
  x = clampf(x, -87.0f, 88.0f);
  // Adding 1.5 * 2^23 rounds x / ln 2 to an integer n, which then sits in the low mantissa bits
  // of `shifted`: integer arithmetic on the bits gives 2^n without a float-to-int conversion.
  const float round_magic = 12582912.0f;
  float shifted = x * 1.44269504088896341f + round_magic;
  float n = shifted - round_magic;
  float r = x - n * 0.693145751953125f;   // ln 2 split in a high part exact in float ...
  r = r - n * 1.428606765330187e-06f;     // ... and the low remainder
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t shifted_bits;
  memcpy(&shifted_bits, &shifted, sizeof(shifted_bits));
  const uint32_t magic_bits = 0x4B400000u;  // the bits of round_magic
  float two_to_n = bits_to_float((shifted_bits - magic_bits + 127u) << 23);
  float result = p * two_to_n;
  return input < -87.0f ? 0.0f : result;
}

// exp(-|x|), in (0, 1]: the one exponential that sigmoid, tanh and the losses need, since it
// never overflows. Written once so that a loop calling two of them computes it once.
FT_HD float exp_neg_abs(float x) { return math::exp(-abs_value(x)); }

// tanh: an odd polynomial fitted to tanh(x)/x on |x| < 0.6 (relative error ~1e-7), and
// (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.3 beyond, where 1 - e no longer cancels. Both
// are computed and one selected, which keeps the loop branch-free.
template <class T>
FT_HD T tanh(T x) {
  T x2 = x * x;
  T p = -0.00589876f;
  p = p * x2 + 0.02079768f;
  p = p * x2 - 0.05378357f;
  p = p * x2 + 0.13331902f;
  p = p * x2 - 0.33333296f;
  p = p * x2 + 1.0f;
  T small = x * p;
  T e = exp_neg_abs(2.0f * x);
  T large = (1.0f - e) / (1.0f + e);
  large = select(x < 0.0f, -large, large);
  return select(abs_value(x) < 0.6f, small, large);
}

// tanh'(x) = 1 - tanh(x)^2 = 4 e / (1 + e)^2 with e = exp(-2|x|): a product of positive terms,
// so it keeps its relative accuracy where 1 - tanh^2 would cancel (|x| > 4 or so).
template <class T>
FT_HD T tanh_derivative(T x) {
  T e = exp_neg_abs(2.0f * x);
  T inv = 1.0f / (1.0f + e);
  return 4.0f * e * inv * inv;
}

// sigmoid(x) = 1 / (1 + exp(-x)) for x >= 0 and exp(x) / (1 + exp(x)) below: with
// e = exp(-|x|) neither overflows, and the result keeps its relative accuracy for large -x.
template <class T>
FT_HD T sigmoid(T x) {
  T e = exp_neg_abs(x);
  T numerator = select(x < 0.0f, e, T(1.0f));
  return numerator / (1.0f + e);
}

// sigmoid'(x) = sigmoid(x) (1 - sigmoid(x)) = e / (1 + e)^2 with e = exp(-|x|), without the
// cancellation of 1 - sigmoid(x) for large x.
template <class T>
FT_HD T sigmoid_derivative(T x) {
  T e = exp_neg_abs(x);
  T inv = 1.0f / (1.0f + e);
  return e * inv * inv;
}

// log(1 + x) for x in [0, 1] (what softplus needs): 2 atanh(s) with s = x / (2 + x) <= 1/3,
// its odd series to s^15 (truncation below 2e-9 relative), with no cancellation for small x.
FT_HD float log1p_unit(float x) {
  float s = x / (2.0f + x);
  float s2 = s * s;
  float p = 1.0f / 15.0f;
  p = p * s2 + 1.0f / 13.0f;
  p = p * s2 + 1.0f / 11.0f;
  p = p * s2 + 1.0f / 9.0f;
  p = p * s2 + 1.0f / 7.0f;
  p = p * s2 + 1.0f / 5.0f;
  p = p * s2 + 1.0f / 3.0f;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// Max, sum and dot product of contiguous rows (softmax, cross-entropy). Eight independent lanes
// instead of one running value: the CPU loops then vectorize (sum, dot) or at least run eight
// comparisons in flight (max), where a single chain would wait on each addition. A NaN that is
// not the first element is skipped by row_max; the exponentials that follow still turn it
// into NaN.
FT_HD float row_max(const float* x, int64_t n) {
  float lanes[8];
  for (int lane = 0; lane < 8; ++lane) lanes[lane] = x[0];
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int lane = 0; lane < 8; ++lane) lanes[lane] = x[i + lane] > lanes[lane] ? x[i + lane] : lanes[lane];
  }
  float result = lanes[0];
  for (int lane = 1; lane < 8; ++lane) result = lanes[lane] > result ? lanes[lane] : result;
  for (; i < n; ++i) result = x[i] > result ? x[i] : result;
  return result;
}

FT_HD float row_dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int lane = 0; lane < 8; ++lane) lanes[lane] += a[i + lane] * b[i + lane];
  }
  for (; i < n; ++i) lanes[0] += a[i] * b[i];
  float result = 0.0f;
  for (float lane : lanes) result += lane;
  return result;
}

FT_HD float row_sum(const float* x, int64_t n) {
  float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int lane = 0; lane < 8; ++lane) lanes[lane] += x[i + lane];
  }
  for (; i < n; ++i) lanes[0] += x[i];
  float result = 0.0f;
  for (float lane : lanes) result += lane;
  return result;
}

}  // namespace fusedtrain::math
