// Per-element loss terms and their gradients (before the 1/N of a mean reduction).
#pragma once
#include "common/fast_math.h"

namespace fusedtrain::loss {

FT_HD float mse_value(float pred, float target) {
  float diff = pred - target;
  return diff * diff;
}
FT_HD float mse_grad(float pred, float target) { return 2.0f * (pred - target); }

// Binary cross-entropy on a logit z, written so that it never overflows:
// -t log(sigmoid(z)) - (1 - t) log(1 - sigmoid(z)) = max(z, 0) - z t + log(1 + exp(-|z|)).
// The first two terms are added first: for t in {0, 1} their difference is exact, so a
// confident, correct prediction keeps the relative accuracy of its small log(1 + exp(-|z|)).
FT_HD float bce_logits_value(float z, float target) {
  float positive = z > 0.0f ? z : 0.0f;
  return (positive - z * target) + math::log1p_unit(math::exp_neg_abs(z));
}
FT_HD float bce_logits_grad(float z, float target) { return math::sigmoid(z) - target; }

}  // namespace fusedtrain::loss
