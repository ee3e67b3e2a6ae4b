// Reductions: bias gradient (column sums), row argmax, correct-prediction counts, sum of squares
// and in-place scaling.
#include <cstdint>

#include "cpu/isa.h"
#include "cpu/parallel.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {
constexpr int64_t kReductionChunk = 1 << 15;
}  // namespace

// Threads take disjoint column blocks, each summing its block down all rows in row order: the
// inner loop runs along a contiguous row segment (vectorizes) and the result does not depend
// on the thread count.
void bias_grad(const float* grad_output, float* grad_bias, int64_t rows, int64_t cols) {
  int64_t cols_per_thread = kReductionChunk / (rows > 0 ? rows : 1);
  parallel_for(cols, cols_per_thread > 16 ? cols_per_thread : 16, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) grad_bias[j] = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = grad_output + r * cols;
      for (int64_t j = begin; j < end; ++j) grad_bias[j] += row[j];
    }
  });
}

namespace {

// First index of the row's maximum; a NaN counts as larger than everything (as numpy.argmax).
inline int64_t row_argmax(const float* row, int64_t cols) {
  int64_t best = 0;
  float best_value = row[0];
  if (best_value != best_value) return 0;
  for (int64_t j = 1; j < cols; ++j) {
    float value = row[j];
    if (value != value) return j;
    if (value > best_value) {
      best_value = value;
      best = j;
    }
  }
  return best;
}

int64_t rows_per_chunk(int64_t cols) {
  int64_t rows = kReductionChunk / (cols > 0 ? cols : 1);
  return rows > 0 ? rows : 1;
}

template <class Label>
int64_t count_correct_rows(const float* scores, const Label* labels, int64_t rows, int64_t cols) {
  double total = parallel_sum(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    int64_t correct = 0;
    for (int64_t r = begin; r < end; ++r) {
      correct += row_argmax(scores + r * cols, cols) == static_cast<int64_t>(labels[r]);
    }
    return static_cast<double>(correct);
  }, 1);
  return static_cast<int64_t>(total);
}

}  // namespace

void argmax_rows(const float* x, int64_t* indices, int64_t rows, int64_t cols) {
  parallel_for(rows, rows_per_chunk(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) indices[r] = row_argmax(x + r * cols, cols);
  }, 1);
}

int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols) {
  return count_correct_rows(scores, labels, rows, cols);
}

int64_t count_correct(const float* scores, const int64_t* labels, int64_t rows, int64_t cols) {
  return count_correct_rows(scores, labels, rows, cols);
}

double sum_of_squares(const float* x, int64_t n) {
  return parallel_sum(n, kReductionChunk, [&](int64_t begin, int64_t end) {
    // Squares in double: a float square overflows above ~1.8e19 and underflows below ~1e-19,
    // which would make a finite gradient norm inf or 0. Eight partial sums keep it vectorized.
    double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
      for (int lane = 0; lane < 8; ++lane) {
        double value = x[i + lane];
        lanes[lane] += value * value;
      }
    }
    for (; i < end; ++i) lanes[0] += static_cast<double>(x[i]) * x[i];
    double total = 0.0;
    for (double lane : lanes) total += lane;
    return total;
  });
}

void scale(float* x, int64_t n, float factor) {
  parallel_for(n, kReductionChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) x[i] *= factor;
  });
}

}  // namespace fusedtrain::cpu::FT_ISA
