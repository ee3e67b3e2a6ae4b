// The exponential part of softmax, shared by softmax and its gradient (activations.cpp) and
// softmax cross-entropy (losses.cpp): for each row, its max m, y = exp(x - m) and the sum of
// y, which the caller's `done` turns into the row's result while the row is still in L1.
//
// Long rows are taken one at a time in a single pass that also requests the next row's input
// and output lines, so that their loads overlap the exponentials instead of following them.
// Short rows (10 classes, say) are taken in blocks of whole rows: the exponential then runs in
// one pass across the block's rows, where a row alone would leave most of a vector empty.
#pragma once
#include <cstdint>

#include "common/fast_math.h"
#include "cpu/isa.h"
#include "cpu/vec8.h"

namespace fusedtrain::cpu::FT_ISA {

constexpr int64_t kSoftmaxBlockElements = 2048;  // 8 KiB, which stays in L1 between passes
constexpr int64_t kSoftmaxLongRow = 64;          // rows at least this long go one at a time

#if FT_VEC8

// Largest element of a row (n >= 1), as math::row_max, which the compiler leaves scalar.
// max(v, m) returns m where v is NaN, as math::row_max skips a NaN; the exponentials that
// follow still turn it into NaN.
inline float softmax_row_max(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
    m1 = _mm256_max_ps(_mm256_loadu_ps(x + i + 8), m1);
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(_mm256_loadu_ps(x + i), m0);
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    m1 = _mm256_max_ps(_mm256_blendv_ps(m1, _mm256_maskload_ps(x + i, lanes), _mm256_castsi256_ps(lanes)), m1);
  }
  return horizontal_max(_mm256_max_ps(m0, m1));
}

// y = exp(x - shift) over a row of n elements (y may be x, or null for the sum alone); returns
// the sum of the exponentials. per_line(j) is called once for each j = 0, 16, 32, ... below n,
// in order, along the way: the callers request the next row's lines with it, so that their
// loads overlap the arithmetic.
//
// The loop is software-pipelined: each step reduces the next vector (exp_reduce) and finishes
// the one reduced before, two vectors per step so that the two reduced halves alternate.
template <class PerLine>
inline float exp_shifted_sum(const float* x, float shift, float* y, int64_t n, PerLine&& per_line) {
  const __m256 m = _mm256_set1_ps(shift);
  __m256 sum = _mm256_setzero_ps();
  auto finish = [&](const ExpReduced& reduced, int64_t at) {
    const __m256 e = exp_finish(reduced);
    if (y) _mm256_storeu_ps(y + at, e);
    sum = _mm256_add_ps(sum, e);
  };
  int64_t i = 0, line = 0;
  if (n >= 8) {
    ExpReduced ahead = exp_reduce(_mm256_sub_ps(_mm256_loadu_ps(x), m));
    for (i = 8; i + 16 <= n; i += 16, line += 16) {
      per_line(line);
      const ExpReduced second = exp_reduce(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
      finish(ahead, i - 8);
      ahead = exp_reduce(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m));
      finish(second, i);
    }
    if (i + 8 <= n) {
      const ExpReduced second = exp_reduce(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
      finish(ahead, i - 8);
      ahead = second;
      i += 8;
    }
    finish(ahead, i - 8);
  }
  for (; line < n; line += 16) per_line(line);
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(x + i, lanes), m)),
                                   _mm256_castsi256_ps(lanes));
    if (y) _mm256_maskstore_ps(y + i, lanes, e);
    sum = _mm256_add_ps(sum, e);
  }
  return horizontal_sum(sum);
}

// y = exp(y) over a block of n elements, all <= 0; the next block's lines are requested
// meanwhile (next_n elements of next and of next_y, unless it is null).
inline void exp_block(float* y, int64_t n, const float* next, float* next_y, int64_t next_n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (i < next_n) {
      __builtin_prefetch(next + i);
      if (next_y) __builtin_prefetch(next_y + i, 1);
    }
    _mm256_storeu_ps(y + i, exp_nonpositive(_mm256_loadu_ps(y + i)));
    _mm256_storeu_ps(y + i + 8, exp_nonpositive(_mm256_loadu_ps(y + i + 8)));
  }
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_nonpositive(_mm256_loadu_ps(y + i)));
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    _mm256_maskstore_ps(y + i, lanes, exp_nonpositive(_mm256_maskload_ps(y + i, lanes)));
  }
}

#else  // portable build: math::exp, a line at a time

inline float softmax_row_max(const float* x, int64_t n) { return math::row_max(x, n); }

// As the AVX2 version; the sum is taken in math::row_sum's order, so that it equals the sum
// of the block path over the same row.
template <class PerLine>
inline float exp_shifted_sum(const float* x, float shift, float* y, int64_t n, PerLine&& per_line) {
  float lanes[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (i % 16 == 0) per_line(i);
    for (int lane = 0; lane < 8; ++lane) {
      const float e = math::exp(x[i + lane] - shift);
      if (y) y[i + lane] = e;
      lanes[lane] += e;
    }
  }
  if (i % 16 == 0 && i < n) per_line(i);
  for (; i < n; ++i) {
    const float e = math::exp(x[i] - shift);
    if (y) y[i] = e;
    lanes[0] += e;
  }
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum;
}

inline void exp_block(float* y, int64_t n, const float* next, float* next_y, int64_t next_n) {
  constexpr int64_t kLine = 64 / sizeof(float);
  int64_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    if (i < next_n) {
      __builtin_prefetch(next + i);
      if (next_y) __builtin_prefetch(next_y + i, 1);
    }
    for (int64_t j = i; j < i + kLine; ++j) y[j] = math::exp(y[j]);
  }
  for (; i < n; ++i) y[i] = math::exp(y[i]);
}

#endif

// Rows [begin, end) of x (rows x cols, cols >= 1) into y (which may be x): start(r, m) with
// row r's max m, before y's row is written; y's row = exp(x's row - m); done(r, sum) with the
// sum of that row's exponentials, to finish it. With y null only the sums are made (the same
// ones): long rows store nothing, blocks of short rows go through a buffer on the stack.
template <class Start, class Done>
inline void softmax_exp_rows(const float* x, float* y, int64_t begin, int64_t end, int64_t cols, Start&& start,
                             Done&& done) {
#if FT_VEC8
  if (cols >= kSoftmaxLongRow) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = y ? y + r * cols : nullptr;
      const float m = softmax_row_max(x_row, cols);
      start(r, m);
      const bool last = r + 1 == end;
      const float* next = last ? nullptr : x_row + cols;
      float* next_y = last || !y ? nullptr : y_row + cols;
      done(r, exp_shifted_sum(x_row, m, y_row, cols, [&](int64_t j) {
        if (next) __builtin_prefetch(next + j);
        if (next_y) __builtin_prefetch(next_y + j, 1);
      }));
    }
    return;
  }
#endif
  float scratch[kSoftmaxBlockElements];
  const int64_t block_rows = kSoftmaxBlockElements / cols > 1 ? kSoftmaxBlockElements / cols : 1;
  for (int64_t first = begin; first < end; first += block_rows) {
    const int64_t last = end - first < block_rows ? end : first + block_rows;
    const int64_t next_rows = end - last < block_rows ? end - last : block_rows;
    // Without y, a row longer than the buffer (portable build only) has its exponentials
    // summed as they are made, in the order of the block path's sum.
    if (!y && cols > kSoftmaxBlockElements) {
      const float m = softmax_row_max(x + first * cols, cols);
      start(first, m);
      done(first, exp_shifted_sum(x + first * cols, m, nullptr, cols, [](int64_t) {}));
      continue;
    }
    float* block = y ? y + first * cols : scratch;
    for (int64_t r = first; r < last; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = block + (r - first) * cols;
      const float m = softmax_row_max(x_row, cols);
      start(r, m);
      for (int64_t j = 0; j < cols; ++j) y_row[j] = x_row[j] - m;
    }
    exp_block(block, (last - first) * cols, x + last * cols, y ? y + last * cols : nullptr, next_rows * cols);
    for (int64_t r = first; r < last; ++r) done(r, math::row_sum(block + (r - first) * cols, cols));
  }
}

}  // namespace fusedtrain::cpu::FT_ISA
