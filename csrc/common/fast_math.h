// exp and tanh written with branch-free arithmetic only, so that the CPU loops vectorize and the
// CUDA kernels compute bit-for-bit the same values as the CPU.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace fusedtrain::math {

FT_HD float bits_to_float(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

FT_HD float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// exp(x) = 2^n * exp(r) with n = round(x / ln 2) and |r| <= ln(2)/2; exp(r) by its Taylor
// series to r^7 (relative error below 2e-7 on that interval). The input is clamped so that
// 2^n stays a normal float: exp(-87.3) ~ 1.2e-38, exp(88.7) ~ 3.3e38. NaN propagates.
FT_HD float exp(float x) {
  const float input = x;
  const bool is_nan = x != x;
  x = is_nan ? 0.0f : clampf(x, -87.3f, 88.7f);
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (x * 1.44269504088896341f + round_magic) - round_magic;
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
  int32_t exponent = static_cast<int32_t>(n) + 127;
  float result = p * bits_to_float(static_cast<uint32_t>(exponent) << 23);
  return is_nan ? input : result;
}

// tanh: an odd polynomial fitted to tanh(x)/x on |x| < 0.6 (relative error ~1e-7), and
// 1 - 2 / (exp(2|x|) + 1) beyond, where it no longer cancels badly. Both are computed and one
// selected, which keeps the loop branch-free.
FT_HD float tanh(float x) {
  float ax = x < 0.0f ? -x : x;
  float x2 = x * x;
  float p = -0.00589876f;
  p = p * x2 + 0.02079768f;
  p = p * x2 - 0.05378357f;
  p = p * x2 + 0.13331902f;
  p = p * x2 - 0.33333296f;
  p = p * x2 + 1.0f;
  float small = x * p;
  float large = 1.0f - 2.0f / (math::exp(2.0f * ax) + 1.0f);
  large = x < 0.0f ? -large : large;
  return ax < 0.6f ? small : large;
}

FT_HD float sigmoid(float x) { return 1.0f / (1.0f + math::exp(-x)); }

}  // namespace fusedtrain::math
