// Activation and softmax kernels: elementwise loops over the formulas of common/activations.h
// (eight lanes at a time in the AVX2 build), split across threads in contiguous chunks.
#include <cstdint>

#include "common/activations.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "cpu/softmax_rows.h"
#include "cpu/vec8.h"

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
      map_elements(end - begin, y + begin, [&](auto value) { return Act::forward(value, param); }, x + begin);
    });
  });
}

void activation_backward(Activation activation, float param, const float* grad_output, const float* x,
                         float* grad_input, int64_t n) {
  with_activation(activation, [&](auto act) {
    using Act = decltype(act);
    parallel_for(n, kElementwiseChunk, [&](int64_t begin, int64_t end) {
      map_elements(end - begin, grad_input + begin,
                   [&](auto gradient, auto value) { return Act::backward(gradient, value, param); },
                   grad_output + begin, x + begin);
    });
  });
}

namespace {

int64_t rows_per_chunk(int64_t cols) {
  int64_t rows = kRowChunkElements / (cols > 0 ? cols : 1);
  return rows > 0 ? rows : 1;
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    softmax_exp_rows(x, y, begin, end, cols, [](int64_t, double) {}, [&](int64_t r, float exp_sum) {
      float* y_row = y + r * cols;
      const float inv_sum = 1.0f / exp_sum;
      for (int64_t j = 0; j < cols; ++j) y_row[j] *= inv_sum;
    });
  }, 1);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows,
                      int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    // grad_input holds the softmax s first, then s * (g - <g, s>) row by row; it may alias x
    // (whose row is read before it is written) but not grad_output.
    softmax_exp_rows(x, grad_input, begin, end, cols, [](int64_t, double) {}, [&](int64_t r, float exp_sum) {
      const float* g = grad_output + r * cols;
      float* out = grad_input + r * cols;
      const float inv_sum = 1.0f / exp_sum;
      for (int64_t j = 0; j < cols; ++j) out[j] *= inv_sum;
      const float dot = math::row_dot(g, out, cols);
      for (int64_t j = 0; j < cols; ++j) out[j] = out[j] * (g[j] - dot);
    });
  }, 1);
}

}  // namespace fusedtrain::cpu::FT_ISA
