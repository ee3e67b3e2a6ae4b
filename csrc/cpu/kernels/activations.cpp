// Activation and softmax kernels: elementwise loops over the formulas of common/activations.h,
// split across threads in contiguous chunks.
#include <cstdint>

#include "common/activations.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {
// Below this many elements per thread, waking another thread costs more than it saves.
constexpr int64_t kElementwiseChunk = 1 << 15;
// Softmax rows are handed out whole; this many elements per thread at least.
constexpr int64_t kRowChunkElements = 1 << 14;
}  // namespace

void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n) {
  with_activation(activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(n, kElementwiseChunk, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) y[i] = Act::forward(x[i], param);
    });
  });
}

void activation_backward(Activation activation, float param, const float* grad_output, const float* x,
                         float* grad_input, int64_t n) {
  with_activation(activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(n, kElementwiseChunk, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) grad_input[i] = Act::backward(grad_output[i], x[i], param);
    });
  });
}

namespace {

// softmax of one row, max-subtracted so exp never overflows.
inline void softmax_row(const float* x, float* y, int64_t cols) {
  float max_value = x[0];
  for (int64_t j = 1; j < cols; ++j) max_value = x[j] > max_value ? x[j] : max_value;
  float sum = 0.0f;
  for (int64_t j = 0; j < cols; ++j) {
    float e = math::exp(x[j] - max_value);
    y[j] = e;
    sum += e;
  }
  float inv_sum = 1.0f / sum;
  for (int64_t j = 0; j < cols; ++j) y[j] *= inv_sum;
}

int64_t rows_per_chunk(int64_t cols) {
  int64_t rows = kRowChunkElements / (cols > 0 ? cols : 1);
  return rows > 0 ? rows : 1;
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) softmax_row(x + r * cols, y + r * cols, cols);
  }, 1);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* g = grad_output + r * cols;
      float* out = grad_input + r * cols;
      // out holds the softmax s first, then s * (g - <g, s>); out must not alias g.
      softmax_row(x + r * cols, out, cols);
      float dot = 0.0f;
      for (int64_t j = 0; j < cols; ++j) dot += g[j] * out[j];
      for (int64_t j = 0; j < cols; ++j) out[j] = out[j] * (g[j] - dot);
    }
  }, 1);
}

}  // namespace fusedtrain::cpu::FT_ISA
