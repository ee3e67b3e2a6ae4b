// Loss kernels: the loss value (accumulated in double) and its gradient in one pass.
#include <cmath>
#include <cstdint>

#include "common/fast_math.h"
#include "common/losses.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {

constexpr int64_t kLossChunk = 1 << 14;

// Sum of value(a[i], b[i]) over all i, writing grad[i] = scale * gradient(a[i], b[i]) on the way.
template <class Value, class Gradient>
double elementwise_loss(const float* a, const float* b, float* grad, int64_t n, Reduction reduction,
                        Value value, Gradient gradient) {
  if (n == 0) return 0.0;
  float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(n)) : 1.0f;
  double total = parallel_sum(n, kLossChunk, [&](int64_t begin, int64_t end) {
    double sum = 0.0;
    if (grad) {
      for (int64_t i = begin; i < end; ++i) grad[i] = scale * gradient(a[i], b[i]);
    }
    for (int64_t i = begin; i < end; ++i) sum += value(a[i], b[i]);
    return sum;
  });
  return reduction == Reduction::Mean ? total / static_cast<double>(n) : total;
}

template <class Label>
double softmax_cross_entropy(const float* logits, const Label* labels, float* grad, int64_t rows,
                             int64_t classes, Reduction reduction) {
  if (rows == 0) return 0.0;
  float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(rows)) : 1.0f;
  int64_t rows_per_thread = (kLossChunk + classes - 1) / classes;
  double total = parallel_sum(rows, rows_per_thread, [&](int64_t begin, int64_t end) {
    double sum = 0.0;
    for (int64_t r = begin; r < end; ++r) {
      const float* z = logits + r * classes;
      float max_value = z[0];
      for (int64_t j = 1; j < classes; ++j) max_value = z[j] > max_value ? z[j] : max_value;
      float exp_sum = 0.0f;
      for (int64_t j = 0; j < classes; ++j) exp_sum += math::exp(z[j] - max_value);
      int64_t label = static_cast<int64_t>(labels[r]);
      // loss = logsumexp(z) - z[label] = log(sum exp(z - max)) + max - z[label]
      sum += static_cast<double>(logf(exp_sum)) + static_cast<double>(max_value - z[label]);
      if (grad) {
        float* g = grad + r * classes;
        float inv_sum = scale / exp_sum;
        for (int64_t j = 0; j < classes; ++j) g[j] = math::exp(z[j] - max_value) * inv_sum;
        g[label] -= scale;
      }
    }
    return sum;
  }, 1);
  return reduction == Reduction::Mean ? total / static_cast<double>(rows) : total;
}

}  // namespace

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, Reduction reduction) {
  return elementwise_loss(
      pred, target, grad, n, reduction, [](float p, float t) { return loss::mse_value(p, t); },
      [](float p, float t) { return loss::mse_grad(p, t); });
}

double binary_cross_entropy_loss(const float* logits, const float* target, float* grad, int64_t n,
                                 Reduction reduction) {
  return elementwise_loss(
      logits, target, grad, n, reduction, [](float z, float t) { return loss::bce_logits_value(z, t); },
      [](float z, float t) { return loss::bce_logits_grad(z, t); });
}

double softmax_cross_entropy_loss(const float* logits, const int32_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction) {
  return softmax_cross_entropy(logits, labels, grad, rows, classes, reduction);
}

double softmax_cross_entropy_loss(const float* logits, const int64_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction) {
  return softmax_cross_entropy(logits, labels, grad, rows, classes, reduction);
}

}  // namespace fusedtrain::cpu::FT_ISA
