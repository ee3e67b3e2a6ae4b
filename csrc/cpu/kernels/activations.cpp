// Activation and softmax kernels: elementwise loops over the formulas of common/activations.h,
// split across threads in contiguous chunks.
#include <cstdint>

#include "common/activations.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "cpu/softmax_blocks.h"

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

// Softmax of `rows` rows, max-subtracted so exp never overflows; y may alias x. `next_rows`
// rows of input follow x (the next block, see exp_block).
inline void softmax_block(const float* x, float* y, int64_t rows, int64_t cols, int64_t next_rows) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x_row = x + r * cols;
    float* y_row = y + r * cols;
    float max_value = math::row_max(x_row, cols);
    for (int64_t j = 0; j < cols; ++j) y_row[j] = x_row[j] - max_value;
  }
  exp_block(y, rows * cols, x + rows * cols, next_rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    float* y_row = y + r * cols;
    float inv_sum = 1.0f / math::row_sum(y_row, cols);
    for (int64_t j = 0; j < cols; ++j) y_row[j] *= inv_sum;
  }
}

int64_t rows_per_chunk(int64_t cols) {
  int64_t rows = kRowChunkElements / (cols > 0 ? cols : 1);
  return rows > 0 ? rows : 1;
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    for_each_block(begin, end, cols, [&](int64_t first, int64_t count, int64_t next) {
      softmax_block(x + first * cols, y + first * cols, count, cols, next);
    });
  }, 1);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows,
                      int64_t cols) {
  if (cols == 0) return;
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    for_each_block(begin, end, cols, [&](int64_t first, int64_t count, int64_t next) {
      // grad_input holds the softmax s first, then s * (g - <g, s>) row by row; it may alias x
      // (read only by softmax_block) but not grad_output.
      softmax_block(x + first * cols, grad_input + first * cols, count, cols, next);
      for (int64_t r = first; r < first + count; ++r) {
        const float* g = grad_output + r * cols;
        float* out = grad_input + r * cols;
        float dot = math::row_dot(g, out, cols);
        for (int64_t j = 0; j < cols; ++j) out[j] = out[j] * (g[j] - dot);
      }
    });
  }, 1);
}

}  // namespace fusedtrain::cpu::FT_ISA
