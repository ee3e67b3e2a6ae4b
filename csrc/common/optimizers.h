// Per-element optimizer updates. Host code folds the hyper-parameters that do not depend on the
// element (bias corrections, decay factors) into these structs once per step.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace fusedtrain::optim {

struct SgdHyper {
  float lr;
  float momentum;
  float weight_decay;
  bool nesterov;
};

// PyTorch's SGD (dampening 0): the velocity starts at zero, so the first step stores g.
FT_HD void sgd_update(float& param, float grad, float* velocity, const SgdHyper& h) {
  grad += h.weight_decay * param;
  if (velocity) {
    float v = h.momentum * *velocity + grad;
    *velocity = v;
    grad = h.nesterov ? grad + h.momentum * v : v;
  }
  param -= h.lr * grad;
}

struct AdamHyper {
  float lr;
  float beta1;
  float beta2;
  float eps;
  float weight_decay;  // L2 (added to the gradient) unless decoupled
  bool decoupled;      // AdamW: param *= 1 - lr * weight_decay before the update
  float step_size;             // lr / (1 - beta1^step)
  float inv_sqrt_correction2;  // 1 / sqrt(1 - beta2^step)
};

// Adam's per-step constants, computed on the host once per step: the bias corrections in
// double (beta^step underflows gracefully and 1 - beta^step keeps its digits), folded into
// the step size.
static inline AdamHyper adam_hyper(float lr, float beta1, float beta2, float eps, float weight_decay,
                                   bool decoupled, int64_t step) {
  double correction1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  double correction2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  return AdamHyper{lr,
                   beta1,
                   beta2,
                   eps,
                   weight_decay,
                   decoupled,
                   static_cast<float>(lr / correction1),
                   static_cast<float>(1.0 / std::sqrt(correction2))};
}

FT_HD void adam_update(float& param, float grad, float& m, float& v, const AdamHyper& h) {
  if (h.decoupled) {
    param -= h.lr * h.weight_decay * param;
  } else {
    grad += h.weight_decay * param;
  }
  m = h.beta1 * m + (1.0f - h.beta1) * grad;
  v = h.beta2 * v + (1.0f - h.beta2) * grad * grad;
  float denom = sqrtf(v) * h.inv_sqrt_correction2 + h.eps;
  param -= h.step_size * m / denom;
}

struct RmspropHyper {
  float lr;
  float alpha;
  float eps;
  float weight_decay;
};

FT_HD void rmsprop_update(float& param, float grad, float& square_avg, const RmspropHyper& h) {
  grad += h.weight_decay * param;
  square_avg = h.alpha * square_avg + (1.0f - h.alpha) * grad * grad;
  param -= h.lr * grad / (sqrtf(square_avg) + h.eps);
}

}  // namespace fusedtrain::optim
