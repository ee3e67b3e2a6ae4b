// Loss kernels: the loss value (accumulated in double) and its gradient in one pass. The
// gradient may be written over the predictions (in place): each element is read before its
// gradient is stored.
#include <cmath>
#include <cstdint>

#include "common/fast_math.h"
#include "common/losses.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "cpu/softmax_rows.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {

constexpr int64_t kLossChunk = 1 << 14;

// Sum of value(a[i], b[i]) over [begin, end), and grad[i] = scale * gradient(a[i], b[i]) when
// kWithGrad. Eight double partial sums, one per lane of a float AVX register, keep the loop
// vectorized (a single running sum would serialize it) and the sum accurate in double.
template <bool kWithGrad, class Value, class Gradient>
double elementwise_loss_range(const float* a, const float* b, float* grad, float scale, int64_t begin,
                              int64_t end, Value value, Gradient gradient) {
  double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    for (int lane = 0; lane < 8; ++lane) {
      float a_value = a[i + lane], b_value = b[i + lane];
      lanes[lane] += static_cast<double>(value(a_value, b_value));
      if constexpr (kWithGrad) grad[i + lane] = scale * gradient(a_value, b_value);
    }
  }
  for (; i < end; ++i) {
    float a_value = a[i], b_value = b[i];
    lanes[0] += static_cast<double>(value(a_value, b_value));
    if constexpr (kWithGrad) grad[i] = scale * gradient(a_value, b_value);
  }
  double total = 0.0;
  for (double lane : lanes) total += lane;
  return total;
}

template <class Value, class Gradient>
double elementwise_loss(const float* a, const float* b, float* grad, int64_t n, Reduction reduction,
                        Value value, Gradient gradient) {
  if (n == 0) return 0.0;
  float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(n)) : 1.0f;
  double total = parallel_sum(n, kLossChunk, [&](int64_t begin, int64_t end) {
    return grad ? elementwise_loss_range<true>(a, b, grad, scale, begin, end, value, gradient)
                : elementwise_loss_range<false>(a, b, grad, scale, begin, end, value, gradient);
  });
  return reduction == Reduction::Mean ? total / static_cast<double>(n) : total;
}

// A gradient of softmax cross-entropy at least this large is written with streaming stores,
// which skip the caches. Smaller ones stay in the caches for the layer that reads them next:
// streaming a 1 or 4 MiB gradient made the loss and the dW product that reads it 7% slower
// together, while at 16 MiB (with 16 MiB of logits, past this machine's 16 MiB L3) the product
// took as long either way and the loss ran 10% faster.
constexpr int64_t kStreamedGradientBytes = int64_t{8} << 20;

#if FT_VEC8
constexpr int64_t kStreamedMaxClasses = 4096;  // a scratch row of 16 KiB

// Rows [begin, end) of softmax cross-entropy with a gradient of kStreamedGradientBytes or more,
// for rows of 64 to kStreamedMaxClasses classes. Each row's exponentials go to a scratch row in
// L1, with e[label] - sum in the label's place, so that scaling by 1 / sum gives the whole
// gradient row (softmax - onehot), which stream_scaled then writes with streaming stores (the
// scratch row sits at the gradient row's offset in a cache line, as it requires). Streaming the
// lines out in one burst per row measured faster than spreading the stores over the next row's
// exponentials.
template <class Label>
double softmax_cross_entropy_streamed(const float* logits, const Label* labels, float* grad, int64_t begin,
                                      int64_t end, int64_t classes, float scale) {
  alignas(64) float scratch[kStreamedMaxClasses + 16];
  double sum = 0.0;
  for (int64_t r = begin; r < end; ++r) {
    const float* x_row = logits + r * classes;
    float* g = grad + r * classes;
    const int64_t label = labels[r];
    const ExpShift shift = softmax_row_shift(x_row, classes);
    sum += shift.value - x_row[label];
    float* e = scratch + line_offset(g);
    const float* next = r + 1 < end ? x_row + classes : nullptr;
    const float exp_sum = exp_shifted_sum(x_row, shift, e, classes, [&](int64_t j) {
      if (next) __builtin_prefetch(next + j);
    });
    sum += static_cast<double>(logf(exp_sum));
    e[label] -= exp_sum;
    stream_scaled(g, e, classes, scale / exp_sum);
  }
  _mm_sfence();  // the streaming stores are seen before the caller (or another thread) reads grad
  return sum;
}
#endif

// Rows [begin, end) of softmax cross-entropy: loss = logsumexp(z) - z[label]
// = log(sum exp(z - s)) + s - z[label], for s the row's shift (its max, or near it: ExpShift).
// With kWithGrad the gradient rows receive exp(z - s) (softmax_rows.h), then each is scaled to
// softmax - onehot; without, the same sums are made and nothing is stored, so the loss is the
// same either way.
template <bool kWithGrad, class Label>
double softmax_cross_entropy_rows(const float* logits, const Label* labels, float* grad, int64_t begin,
                                  int64_t end, int64_t classes, float scale, bool stream) {
#if FT_VEC8
  if (kWithGrad && stream && classes >= kSoftmaxLongRow && classes <= kStreamedMaxClasses)
    return softmax_cross_entropy_streamed(logits, labels, grad, begin, end, classes, scale);
#else
  (void)stream;
#endif
  double sum = 0.0;
  // z[label] is read before the row of grad (which may be z itself) is written.
  auto start = [&](int64_t r, double shift) {
    sum += shift - logits[r * classes + labels[r]];
  };
  softmax_exp_rows(logits, kWithGrad ? grad : nullptr, begin, end, classes, start, [&](int64_t r, float exp_sum) {
    sum += static_cast<double>(logf(exp_sum));
    if constexpr (kWithGrad) {
      float* g = grad + r * classes;
      const float inv_sum = scale / exp_sum;
      for (int64_t j = 0; j < classes; ++j) g[j] *= inv_sum;
      g[labels[r]] -= scale;
    }
  });
  return sum;
}

template <class Label>
double softmax_cross_entropy(const float* logits, const Label* labels, float* grad, int64_t rows,
                             int64_t classes, Reduction reduction) {
  if (rows == 0) return 0.0;
  float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(rows)) : 1.0f;
  int64_t rows_per_thread = (kLossChunk + classes - 1) / classes;
  const bool stream = rows * classes * static_cast<int64_t>(sizeof(float)) >= kStreamedGradientBytes;
  double total = parallel_sum(rows, rows_per_thread, [&](int64_t begin, int64_t end) {
    return grad ? softmax_cross_entropy_rows<true>(logits, labels, grad, begin, end, classes, scale, stream)
                : softmax_cross_entropy_rows<false>(logits, labels, grad, begin, end, classes, scale, stream);
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
