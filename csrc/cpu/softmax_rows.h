// The exponential part of softmax, shared by softmax and its gradient (activations.cpp) and
// softmax cross-entropy (losses.cpp): for each row, its max m, y = exp(x - m) and the sum of
// y, which the caller's `done` turns into the row's result while the row is still in L1.
//
// Long rows are taken one at a time in a single pass that also requests the next row's input
// and output lines, so that their loads overlap the exponentials instead of following them.
// Short rows (10 classes, say) are taken in blocks of whole rows: the exponential then runs in
// one pass across the block's rows, where a row alone would leave most of a vector empty.
#pragma once
#include <cmath>
#include <cstdint>

#include "common/fast_math.h"
#include "cpu/isa.h"
#include "cpu/vec8.h"

namespace fusedtrain::cpu::FT_ISA {

constexpr int64_t kSoftmaxBlockElements = 2048;  // 8 KiB, which stays in L1 between passes
constexpr int64_t kSoftmaxLongRow = 64;          // rows at least this long go one at a time

// What exp_shifted_sum subtracts from each element of a row: the row's max m, or, where the
// row allows it, j ln2/8 for the whole number j nearest 8 m / ln 2 (within ln2/16 of m), which
// the exponential takes from its rounding constant (exp_reduce). That saves three of the
// exponential pass's 14 vector operations per element: the subtraction, and the underflow
// compare and mask (below). `value` is the shift (m or j ln2/8), in double for the loss that
// adds it back.
struct ExpShift {
  double value;
  bool folded;
  float magic;  // kExpRoundMagic - j, when folded
};

// A row may fold its shift when every element is within kFoldedArgument of 0, which bounds
// exp_reduce's error (below 2e-7 + 64 x 2.8e-9), and within kFoldedSpread of the max, so that
// no exponential underflows (x - j ln2/8 >= -86.05 > -87) and none needs the underflow mask.
// Logits almost always qualify; other rows (and NaN or infinities) take the max.
constexpr float kFoldedArgument = 64.0f;
constexpr float kFoldedSpread = 86.0f;

#if FT_VEC8

struct RowBounds {
  float max, min;
};

// Largest element of a row (n >= 1), and with kMin its smallest, as math::row_max, which the
// compiler leaves scalar. max(v, m) returns m where v is NaN, as math::row_max skips a NaN; the
// exponentials that follow still turn it into NaN. (A NaN in x[0] makes the max NaN, and so the
// whole row.)
template <bool kMin>
inline RowBounds row_bounds(const float* x, int64_t n) {
  __m256 hi0 = _mm256_set1_ps(x[0]), hi1 = hi0, lo0 = hi0, lo1 = hi0;
  auto take = [&](__m256 v, __m256& hi, __m256& lo) {
    hi = _mm256_max_ps(v, hi);
    if constexpr (kMin) lo = _mm256_min_ps(v, lo);
  };
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    take(_mm256_loadu_ps(x + i), hi0, lo0);
    take(_mm256_loadu_ps(x + i + 8), hi1, lo1);
  }
  for (; i + 8 <= n; i += 8) take(_mm256_loadu_ps(x + i), hi0, lo0);
  if (i < n) {
    // The lanes past the row take hi0's, elements of the row, which move neither bound.
    const __m256i lanes = first_lanes(n - i);
    take(_mm256_blendv_ps(hi0, _mm256_maskload_ps(x + i, lanes), _mm256_castsi256_ps(lanes)), hi1, lo1);
  }
  return {horizontal_max(_mm256_max_ps(hi0, hi1)), kMin ? horizontal_min(_mm256_min_ps(lo0, lo1)) : 0.0f};
}

inline float softmax_row_max(const float* x, int64_t n) { return row_bounds<false>(x, n).max; }

// The shift for a row (n >= 1), from its max and min, found in one pass.
inline ExpShift softmax_row_shift(const float* x, int64_t n) {
  const RowBounds bounds = row_bounds<true>(x, n);
  const float m = bounds.max;
  if (!(m <= kFoldedArgument && bounds.min >= -kFoldedArgument && m - bounds.min <= kFoldedSpread))
    return {static_cast<double>(m), false, 0.0f};
  const float j = nearbyintf(m * kEighthsPerLn2);
  return {static_cast<double>(j) * kLn2Eighth, true, kExpRoundMagic - j};
}

// y = exp(x - shift.value) over a row of n elements (y may be x, or null for the sum alone);
// returns the sum of the exponentials. per_line(j) is called once for each j = 0, 16, 32, ...
// below n, in order, along the way: the callers request the next row's lines with it, so that
// their loads overlap the arithmetic.
//
// The loop is software-pipelined: each step reduces the next vector (exp_reduce) and finishes
// the one reduced before, two vectors per step so that the two reduced halves alternate.
template <bool kFolded, class PerLine>
inline float exp_shifted_sum(const float* x, const ExpShift& shift, float* y, int64_t n, PerLine&& per_line) {
  const __m256 m = _mm256_set1_ps(static_cast<float>(shift.value));
  const __m256 magic = _mm256_set1_ps(kFolded ? shift.magic : kExpRoundMagic);
  // An unfolded shift is subtracted, and the lanes below -87 masked to 0.
  struct Reduced {
    ExpReduced reduced;
    __m256 underflow;
  };
  auto reduce = [&](__m256 v) -> Reduced {
    if constexpr (kFolded) return {exp_reduce(v, magic), _mm256_setzero_ps()};
    v = _mm256_sub_ps(v, m);
    return {exp_reduce(v, magic), exp_underflows(v)};
  };
  // Unfused: the sum is the same whether y is stored or not.
  auto exp_of = [&](const Reduced& reduced) {
    const __m256 e = exp_finish(reduced.reduced);
    return kFolded ? unfused(e) : _mm256_andnot_ps(reduced.underflow, e);
  };
  __m256 sum = _mm256_setzero_ps();
  auto finish = [&](const Reduced& reduced, int64_t at) {
    const __m256 e = exp_of(reduced);
    if (y) _mm256_storeu_ps(y + at, e);
    sum = _mm256_add_ps(sum, e);
  };
  int64_t i = 0, line = 0;
  if (n >= 8) {
    Reduced ahead = reduce(_mm256_loadu_ps(x));
    for (i = 8; i + 16 <= n; i += 16, line += 16) {
      per_line(line);
      const Reduced second = reduce(_mm256_loadu_ps(x + i));
      finish(ahead, i - 8);
      ahead = reduce(_mm256_loadu_ps(x + i + 8));
      finish(second, i);
    }
    if (i + 8 <= n) {
      const Reduced second = reduce(_mm256_loadu_ps(x + i));
      finish(ahead, i - 8);
      ahead = second;
      i += 8;
    }
    finish(ahead, i - 8);
  }
  for (; line < n; line += 16) per_line(line);
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    const __m256 e = _mm256_and_ps(exp_of(reduce(_mm256_maskload_ps(x + i, lanes))), _mm256_castsi256_ps(lanes));
    if (y) _mm256_maskstore_ps(y + i, lanes, e);
    sum = _mm256_add_ps(sum, e);
  }
  return horizontal_sum(sum);
}

template <class PerLine>
inline float exp_shifted_sum(const float* x, const ExpShift& shift, float* y, int64_t n, PerLine&& per_line) {
  return shift.folded ? exp_shifted_sum<true>(x, shift, y, n, per_line)
                      : exp_shifted_sum<false>(x, shift, y, n, per_line);
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

inline ExpShift softmax_row_shift(const float* x, int64_t n) {
  return {static_cast<double>(math::row_max(x, n)), false, 0.0f};
}

// As the AVX2 version; the sum is taken in math::row_sum's order, so that it equals the sum
// of the block path over the same row.
template <class PerLine>
inline float exp_shifted_sum(const float* x, const ExpShift& row_shift, float* y, int64_t n, PerLine&& per_line) {
  const float shift = static_cast<float>(row_shift.value);
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

// Rows [begin, end) of x (rows x cols, cols >= 1) into y (which may be x): start(r, shift) with
// row r's shift (its max, or near it: ExpShift), before y's row is written; y's row =
// exp(x's row - shift); done(r, sum) with the sum of that row's exponentials, to finish it.
// With y null only the sums are made (the same ones): long rows store nothing, blocks of short
// rows go through a buffer on the stack.
template <class Start, class Done>
inline void softmax_exp_rows(const float* x, float* y, int64_t begin, int64_t end, int64_t cols, Start&& start,
                             Done&& done) {
#if FT_VEC8
  if (cols >= kSoftmaxLongRow) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = y ? y + r * cols : nullptr;
      const ExpShift shift = softmax_row_shift(x_row, cols);
      start(r, shift.value);
      const bool last = r + 1 == end;
      const float* next = last ? nullptr : x_row + cols;
      float* next_y = last || !y ? nullptr : y_row + cols;
      done(r, exp_shifted_sum(x_row, shift, y_row, cols, [&](int64_t j) {
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
      const ExpShift shift = softmax_row_shift(x + first * cols, cols);
      start(first, shift.value);
      done(first, exp_shifted_sum(x + first * cols, shift, nullptr, cols, [](int64_t) {}));
      continue;
    }
    float* block = y ? y + first * cols : scratch;
    for (int64_t r = first; r < last; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = block + (r - first) * cols;
      const float m = softmax_row_max(x_row, cols);
      start(r, static_cast<double>(m));
      for (int64_t j = 0; j < cols; ++j) y_row[j] = x_row[j] - m;
    }
    exp_block(block, (last - first) * cols, x + last * cols, y ? y + last * cols : nullptr, next_rows * cols);
    for (int64_t r = first; r < last; ++r) done(r, math::row_sum(block + (r - first) * cols, cols));
  }
}

}  // namespace fusedtrain::cpu::FT_ISA
