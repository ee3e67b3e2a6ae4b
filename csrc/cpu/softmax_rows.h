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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FT_SOFTMAX_AVX2 1
#else
#define FT_SOFTMAX_AVX2 0
#endif

namespace fusedtrain::cpu::FT_ISA {

constexpr int64_t kSoftmaxBlockElements = 2048;  // 8 KiB, which stays in L1 between passes
constexpr int64_t kSoftmaxLongRow = 64;          // rows at least this long go one at a time

#if FT_SOFTMAX_AVX2

namespace softmax_detail {

// exp(x) for eight x <= 0 (arguments less their row's max), with a relative error below 2e-7
// (1.6e-7 measured over [-87, 0]), 0 below -87 as math::exp, NaN kept. It is cheaper than
// math::exp, which must serve every argument: x = (n + f) ln2 / 8 with n = round(8 x / ln 2),
// so exp(x) = 2^(n >> 3) * 2^((n & 7) / 8) * exp(r), |r| <= ln 2 / 16. The eighth powers of
// two come from an eight-entry table in a register, and exp(r) needs only a cubic (fitted for
// least maximum relative error on that interval) instead of the degree-7 series.
inline __m256 exp_nonpositive(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
  // Adding 1.5 * 2^23 rounds 8 x / ln 2 to the integer n, left in the low mantissa bits.
  const __m256 round_magic = _mm256_set1_ps(12582912.0f);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(11.5415603271117f), round_magic);
  const __m256 n = _mm256_sub_ps(shifted, round_magic);
  // r = x - n ln2/8, ln2/8 split in a 12-bit part (n * it is exact) and the float remainder.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.086639404296875f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(3.993272912339307e-06f), r);
  __m256 p = _mm256_set1_ps(0.16664292445732787f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.500064784204368f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0000000487114307f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // The bits of 2^(n/8) are table[n & 7] + ((n >> 3) << 23). With k the bits of `shifted`,
  // n = k - magic_bits, and permutevar reads only k's low three bits (= n & 7, magic_bits
  // having none), so each entry holds the bits of 2^(j/8) less (magic_bits << 20) and
  // (j << 20) (modulo 2^32): adding k << 20 then restores both.
  constexpr uint32_t kMagicBits = 0x4B400000u;
  constexpr uint32_t kEighths[8] = {0x3f800000u, 0x3f8b95c2u, 0x3f9837f0u, 0x3fa5fed7u,
                                    0x3fb504f3u, 0x3fc5672au, 0x3fd744fdu, 0x3feac0c7u};
  auto entry = [&](uint32_t j) { return static_cast<int>(kEighths[j] - (kMagicBits << 20) - (j << 20)); };
  const __m256i table = _mm256_setr_epi32(entry(0), entry(1), entry(2), entry(3), entry(4), entry(5),
                                          entry(6), entry(7));
  const __m256i k = _mm256_castps_si256(shifted);
  const __m256i scale = _mm256_add_epi32(_mm256_permutevar8x32_epi32(table, k), _mm256_slli_epi32(k, 20));
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(scale)));
}

// Lanes [0, count) set, for the last, partial vector of a row (0 < count < 8).
inline __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

inline float horizontal_max(__m256 v) {
  __m128 half = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_max_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_max_ss(half, _mm_movehdup_ps(half)));
}

inline float horizontal_sum(__m256 v) {
  __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
}

}  // namespace softmax_detail

// Largest element of a row (n >= 1), as math::row_max, which the compiler leaves scalar.
// max(v, m) returns m where v is NaN, as math::row_max skips a NaN; the exponentials that
// follow still turn it into NaN.
inline float softmax_row_max(const float* x, int64_t n) {
  using namespace softmax_detail;
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

// y = exp(x - shift) over a row of n elements (y may be x); returns the sum of y. Meanwhile
// the next row's input and output lines are requested (next, next_y; null for the last row).
inline float exp_shifted_sum(const float* x, float shift, float* y, int64_t n, const float* next,
                             float* next_y) {
  using namespace softmax_detail;
  const __m256 m = _mm256_set1_ps(shift);
  __m256 sum0 = _mm256_setzero_ps(), sum1 = sum0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (next) {
      __builtin_prefetch(next + i);
      __builtin_prefetch(next_y + i, 1);
    }
    const __m256 e0 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    const __m256 e1 = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), m));
    _mm256_storeu_ps(y + i, e0);
    _mm256_storeu_ps(y + i + 8, e1);
    sum0 = _mm256_add_ps(sum0, e0);
    sum1 = _mm256_add_ps(sum1, e1);
  }
  if (next && i < n) {
    __builtin_prefetch(next + i);
    __builtin_prefetch(next_y + i, 1);
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(y + i, e);
    sum0 = _mm256_add_ps(sum0, e);
  }
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    const __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(_mm256_maskload_ps(x + i, lanes), m)),
                                   _mm256_castsi256_ps(lanes));
    _mm256_maskstore_ps(y + i, lanes, e);
    sum1 = _mm256_add_ps(sum1, e);
  }
  return horizontal_sum(_mm256_add_ps(sum0, sum1));
}

// y = exp(y) over a block of n elements, all <= 0; the next block's lines are requested
// meanwhile (next_n elements of next and next_y).
inline void exp_block(float* y, int64_t n, const float* next, float* next_y, int64_t next_n) {
  using namespace softmax_detail;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    if (i < next_n) {
      __builtin_prefetch(next + i);
      __builtin_prefetch(next_y + i, 1);
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

inline void exp_block(float* y, int64_t n, const float* next, float* next_y, int64_t next_n) {
  constexpr int64_t kLine = 64 / sizeof(float);
  int64_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    if (i < next_n) {
      __builtin_prefetch(next + i);
      __builtin_prefetch(next_y + i, 1);
    }
    for (int64_t j = i; j < i + kLine; ++j) y[j] = math::exp(y[j]);
  }
  for (; i < n; ++i) y[i] = math::exp(y[i]);
}

#endif

// Rows [begin, end) of x (rows x cols, cols >= 1) into y (which may be x): start(r, m) with
// row r's max m, before y's row is written; y's row = exp(x's row - m); done(r, sum) with the
// sum of that row of y, to finish it.
template <class Start, class Done>
inline void softmax_exp_rows(const float* x, float* y, int64_t begin, int64_t end, int64_t cols, Start&& start,
                             Done&& done) {
#if FT_SOFTMAX_AVX2
  if (cols >= kSoftmaxLongRow) {
    for (int64_t r = begin; r < end; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = y + r * cols;
      const float m = softmax_row_max(x_row, cols);
      start(r, m);
      const bool last = r + 1 == end;
      done(r, exp_shifted_sum(x_row, m, y_row, cols, last ? nullptr : x_row + cols, last ? nullptr : y_row + cols));
    }
    return;
  }
#endif
  const int64_t block_rows = kSoftmaxBlockElements / cols > 1 ? kSoftmaxBlockElements / cols : 1;
  for (int64_t first = begin; first < end; first += block_rows) {
    const int64_t last = end - first < block_rows ? end : first + block_rows;
    const int64_t next_rows = end - last < block_rows ? end - last : block_rows;
    for (int64_t r = first; r < last; ++r) {
      const float* x_row = x + r * cols;
      float* y_row = y + r * cols;
      const float m = softmax_row_max(x_row, cols);
      start(r, m);
      for (int64_t j = 0; j < cols; ++j) y_row[j] = x_row[j] - m;
    }
    exp_block(y + first * cols, (last - first) * cols, x + last * cols, y + last * cols, next_rows * cols);
    for (int64_t r = first; r < last; ++r) done(r, math::row_sum(y + r * cols, cols));
  }
}

}  // namespace fusedtrain::cpu::FT_ISA
