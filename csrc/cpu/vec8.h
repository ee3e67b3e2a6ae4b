// Eight floats in an AVX2 register (and, in the AVX-512 build, sixteen in a ZMM register), with
// the arithmetic that the formulas of common/fast_math.h and common/activations.h are written in
// (+ - * /, comparisons, select, abs, exp(-|x|)), so that the CPU loops run those same formulas
// eight or sixteen lanes at a time; and map_elements, the loop that applies one of them to
// arrays, on the widest vector the build has. The portable build has neither: map_elements is
// then a plain loop over floats.
#pragma once
#include <cstdint>

#include "cpu/isa.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FT_VEC8 1
#else
#define FT_VEC8 0
#endif
#if FT_VEC8 && defined(__AVX512F__)
#define FT_VEC16 1
#else
#define FT_VEC16 0
#endif

namespace fusedtrain::cpu::FT_ISA {

#if FT_VEC8

// exp(x - j ln2/8) for eight x, where j is a whole number and x - j ln2/8 lies in [-87, 1]:
// x = (n + f) ln2 / 8 with n = round(8 x / ln 2), so exp(x - j ln2/8) = 2^((n - j) >> 3) *
// 2^(((n - j) & 7) / 8) * exp(r), |r| <= ln 2 / 16. The eighth powers of two come from an
// eight-entry table in a register, and exp(r) needs only a cubic (fitted for least maximum
// relative error on that interval) instead of the degree-7 series, so that it is cheaper than
// math::exp, which must serve every argument. The relative error is below 2e-7 + |x| 2.8e-9
// (measured with j = 0: 1.6e-7 over [-2, 0], 2.1e-7 over [-20, 0], 3.9e-7 over [-87, 0]).
//
// j costs nothing: it is taken from the rounding constant, `magic` = kExpRoundMagic - j (exact
// for |j| < 2^22). exp_nonpositive is the case j = 0 for x <= 0, with 0 below -87.
//
// It comes in two halves so that a loop can overlap vectors by hand (software pipelining):
// reduce the next vector while it finishes this one. The chain from x to exp(x) is long, and
// softmax's exponential pass ran about 10% faster this way than as a plain loop.
constexpr float kExpRoundMagic = 12582912.0f;  // 1.5 * 2^23
constexpr float kEighthsPerLn2 = 11.5415603271117f;  // 8 / ln 2
constexpr double kLn2Eighth = 0.0866433975699931636;  // ln 2 / 8

// Entry e of exp_reduce's table (see there): the bits of 2^(e/8) less (magic_bits << 20) and
// (e << 20), modulo 2^32.
constexpr int exp_table_entry(uint32_t e) {
  constexpr uint32_t kMagicBits = 0x4B400000u;
  constexpr uint32_t kEighths[8] = {0x3f800000u, 0x3f8b95c2u, 0x3f9837f0u, 0x3fa5fed7u,
                                    0x3fb504f3u, 0x3fc5672au, 0x3fd744fdu, 0x3feac0c7u};
  return static_cast<int>(kEighths[e] - (kMagicBits << 20) - (e << 20));
}

// The cubic for exp(r), |r| <= ln 2 / 16, fitted for least maximum relative error.
constexpr float kExpCubic[4] = {0.16664292445732787f, 0.500064784204368f, 1.0000000487114307f, 1.0f};

struct ExpReduced {
  __m256 r, scale;
};

inline ExpReduced exp_reduce(__m256 x, __m256 magic) {
  // Adding magic rounds 8 x / ln 2 to the integer n, left (as n - j) in the low mantissa bits.
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(kEighthsPerLn2), magic);
  const __m256 n = _mm256_sub_ps(shifted, magic);
  // r = x - n ln2/8 in one fused step. float(ln 2 / 8) is within 2.8e-9 of it (relative), which
  // moves r by at most |x| 2.8e-9: 2.4e-7 at x = -87, where the subtraction that made such an x
  // has usually rounded it by more (|x| 6e-8).
  const __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(static_cast<float>(kLn2Eighth)), x);
  // The bits of 2^(i/8) are table[i & 7] + ((i >> 3) << 23), for i = n - j. With k the bits of
  // `shifted`, i = k - magic_bits, and permutevar reads only k's low three bits (= i & 7,
  // magic_bits having none), so each entry holds the bits of 2^(e/8) less (magic_bits << 20) and
  // (e << 20) (modulo 2^32): adding k << 20 then restores both.
  const __m256i table = _mm256_setr_epi32(exp_table_entry(0), exp_table_entry(1), exp_table_entry(2),
                                          exp_table_entry(3), exp_table_entry(4), exp_table_entry(5),
                                          exp_table_entry(6), exp_table_entry(7));
  const __m256i k = _mm256_castps_si256(shifted);
  const __m256i scale = _mm256_add_epi32(_mm256_permutevar8x32_epi32(table, k), _mm256_slli_epi32(k, 20));
  return {r, _mm256_castsi256_ps(scale)};
}

inline __m256 exp_finish(const ExpReduced& reduced) {
  const __m256 r = reduced.r;
  __m256 p = _mm256_set1_ps(kExpCubic[0]);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpCubic[1]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpCubic[2]));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpCubic[3]));
  return _mm256_mul_ps(p, reduced.scale);
}

// v, as a value the compiler may not fuse into the multiply that made it: an addition of v
// then stays an addition (not a multiply-add) whether v is also stored or not, so that a sum
// rounds the same either way.
inline __m256 unfused(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

// The lanes where x < -87, whose exponential must read 0 (exp_reduce's table trick leaves the
// normal range there).
inline __m256 exp_underflows(__m256 x) { return _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ); }

inline __m256 exp_nonpositive(__m256 x) {
  return _mm256_andnot_ps(exp_underflows(x), exp_finish(exp_reduce(x, _mm256_set1_ps(kExpRoundMagic))));
}

// Lanes [0, count) set, for the last, partial vector of a row (none for count <= 0, all for
// count >= 8).
inline __m256i first_lanes(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The largest, the smallest and the sum of a vector's eight lanes.
inline float horizontal_max(__m256 v) {
  __m128 half = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_max_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_max_ss(half, _mm_movehdup_ps(half)));
}

inline float horizontal_min(__m256 v) {
  __m128 half = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_min_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_min_ss(half, _mm_movehdup_ps(half)));
}

inline float horizontal_sum(__m256 v) {
  __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_add_ps(half, _mm_movehl_ps(half, half));
  return _mm_cvtss_f32(_mm_add_ss(half, _mm_movehdup_ps(half)));
}

// The sums of the eight lanes of a, b, c and d, in that order.
inline __m128 horizontal_sums4(__m256 a, __m256 b, __m256 c, __m256 d) {
  // Pairs within each 128-bit half, then pairs of pairs: the low half holds the sums of lanes
  // 0-3 of a, b, c, d and the high half those of lanes 4-7.
  const __m256 quads = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1));
}

// Where p sits in its 64-byte cache line, in floats (p is aligned to 4 bytes).
inline int64_t line_offset(const float* p) {
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(p) & 63) / 4;
}

// dst[j] = src[j] * scale for j in [0, n), where src and dst sit at the same offset in a 64-byte
// line (see line_offset). The lines wholly inside dst are written with streaming stores, which
// skip the caches and do not read the line first (a third less memory traffic than ordinary
// stores for a large output); the partial lines at its two ends, which the data beside dst may
// share, with ordinary ones. The caller issues _mm_sfence() before another thread reads dst.
inline void stream_scaled(float* dst, const float* src, int64_t n, float scale) {
  int64_t head = (16 - line_offset(dst)) & 15;
  if (head > n) head = n;
  const int64_t lines_end = head + (n - head) / 16 * 16;
  const __m256 factor = _mm256_set1_ps(scale);
  for (int64_t j = 0; j < head; ++j) dst[j] = src[j] * scale;
  for (int64_t j = head; j < lines_end; j += 16) {
    _mm256_stream_ps(dst + j, _mm256_mul_ps(_mm256_load_ps(src + j), factor));
    _mm256_stream_ps(dst + j + 8, _mm256_mul_ps(_mm256_load_ps(src + j + 8), factor));
  }
  for (int64_t j = lines_end; j < n; ++j) dst[j] = src[j] * scale;
}

// A float converts implicitly (broadcast), so the formulas' literals (2.0f * x, 1.0f + e)
// read as they do for float.
struct Vec8 {
  __m256 v;
  Vec8(float x) : v(_mm256_set1_ps(x)) {}  // NOLINT(google-explicit-constructor)
  explicit Vec8(__m256 x) : v(x) {}
};

// The result of a comparison: all bits set in the lanes where it holds (false for NaN, as for
// float).
struct Mask8 {
  __m256 bits;
};

inline Vec8 operator+(Vec8 a, Vec8 b) { return Vec8(_mm256_add_ps(a.v, b.v)); }
inline Vec8 operator-(Vec8 a, Vec8 b) { return Vec8(_mm256_sub_ps(a.v, b.v)); }
inline Vec8 operator*(Vec8 a, Vec8 b) { return Vec8(_mm256_mul_ps(a.v, b.v)); }
inline Vec8 operator/(Vec8 a, Vec8 b) { return Vec8(_mm256_div_ps(a.v, b.v)); }
inline Vec8 operator-(Vec8 a) { return Vec8(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))); }
inline Mask8 operator<(Vec8 a, Vec8 b) { return Mask8{_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask8 operator>(Vec8 a, Vec8 b) { return Mask8{_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }

// The Vec8 forms of math::select, math::abs_value and math::exp_neg_abs, which the formulas
// call unqualified so that these are found for Vec8 arguments.
inline Vec8 select(Mask8 condition, Vec8 if_true, Vec8 if_false) {
  return Vec8(_mm256_blendv_ps(if_false.v, if_true.v, condition.bits));
}
inline Vec8 abs_value(Vec8 x) { return Vec8(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x.v)); }
inline Vec8 exp_neg_abs(Vec8 x) { return Vec8(exp_nonpositive(_mm256_or_ps(x.v, _mm256_set1_ps(-0.0f)))); }

#endif

#if FT_VEC16
// Sixteen lanes: the same operations, comparisons giving AVX-512 mask registers.
struct Vec16 {
  __m512 v;
  Vec16(float x) : v(_mm512_set1_ps(x)) {}  // NOLINT(google-explicit-constructor)
  explicit Vec16(__m512 x) : v(x) {}
};

struct Mask16 {
  __mmask16 bits;
};

inline Vec16 operator+(Vec16 a, Vec16 b) { return Vec16(_mm512_add_ps(a.v, b.v)); }
inline Vec16 operator-(Vec16 a, Vec16 b) { return Vec16(_mm512_sub_ps(a.v, b.v)); }
inline Vec16 operator*(Vec16 a, Vec16 b) { return Vec16(_mm512_mul_ps(a.v, b.v)); }
inline Vec16 operator/(Vec16 a, Vec16 b) { return Vec16(_mm512_div_ps(a.v, b.v)); }
inline Vec16 operator-(Vec16 a) {
  return Vec16(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(INT32_MIN))));
}
inline Mask16 operator<(Vec16 a, Vec16 b) { return Mask16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask16 operator>(Vec16 a, Vec16 b) { return Mask16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }

inline Vec16 select(Mask16 condition, Vec16 if_true, Vec16 if_false) {
  return Vec16(_mm512_mask_blend_ps(condition.bits, if_false.v, if_true.v));
}
inline Vec16 abs_value(Vec16 x) { return Vec16(_mm512_abs_ps(x.v)); }

// exp(-|x|) as exp_nonpositive computes it for eight lanes (the same table, reduction and cubic,
// so both widths give the same bits): the table's eight entries twice over, as permutexvar reads
// an index's low four bits.
inline Vec16 exp_neg_abs(Vec16 x) {
  const __m512 negative = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(x.v), _mm512_set1_epi32(INT32_MIN)));
  const __m512 magic = _mm512_set1_ps(kExpRoundMagic);
  const __m512 shifted = _mm512_fmadd_ps(negative, _mm512_set1_ps(kEighthsPerLn2), magic);
  const __m512 n = _mm512_sub_ps(shifted, magic);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(static_cast<float>(kLn2Eighth)), negative);
  const __m512i table = _mm512_setr_epi32(
      exp_table_entry(0), exp_table_entry(1), exp_table_entry(2), exp_table_entry(3), exp_table_entry(4),
      exp_table_entry(5), exp_table_entry(6), exp_table_entry(7), exp_table_entry(0), exp_table_entry(1),
      exp_table_entry(2), exp_table_entry(3), exp_table_entry(4), exp_table_entry(5), exp_table_entry(6),
      exp_table_entry(7));
  const __m512i k = _mm512_castps_si512(shifted);
  const __m512 scale = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_permutexvar_epi32(k, table), _mm512_slli_epi32(k, 20)));
  __m512 p = _mm512_set1_ps(kExpCubic[0]);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpCubic[1]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpCubic[2]));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpCubic[3]));
  const __mmask16 underflows = _mm512_cmp_ps_mask(negative, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  return Vec16(_mm512_maskz_mul_ps(static_cast<__mmask16>(~underflows), p, scale));
}
#endif

// y[i] = op(inputs[i]...) for i in [0, n), op generic over float, Vec8 and Vec16. The vector
// builds take eight (AVX2) or sixteen (AVX-512) elements at a time and the last few as one masked
// vector, so that every element goes through the same arithmetic; y may be one of the inputs.
template <class Op, class... Inputs>
inline void map_elements(int64_t n, float* y, Op&& op, const Inputs*... inputs) {
#if FT_VEC16
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, op(Vec16(_mm512_loadu_ps(inputs + i))...).v);
  if (i < n) {
    const __mmask16 lanes = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, lanes, op(Vec16(_mm512_maskz_loadu_ps(lanes, inputs + i))...).v);
  }
#elif FT_VEC8
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, op(Vec8(_mm256_loadu_ps(inputs + i))...).v);
  if (i < n) {
    const __m256i lanes = first_lanes(n - i);
    _mm256_maskstore_ps(y + i, lanes, op(Vec8(_mm256_maskload_ps(inputs + i, lanes))...).v);
  }
#else
  for (int64_t i = 0; i < n; ++i) y[i] = op(inputs[i]...);
#endif
}

}  // namespace fusedtrain::cpu::FT_ISA
