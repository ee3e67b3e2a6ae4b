// GEMM: C = activation(alpha * op(A) @ op(B) + beta * C + bias), in the blocked scheme of
// Goto & van de Geijn ("Anatomy of high-performance matrix multiplication", 2008): op(B) is
// packed into kc x NR column panels and op(A) into MR x kc row panels, sized to stay in L3/L2
// and L1, and a register-blocked micro-kernel multiplies one A panel by one B panel. Packing
// also absorbs the transposes and pads the edges with zeros, so the micro-kernel only ever sees
// whole MR x NR tiles (an untransposed B is read in place instead where its panels serve one or
// two row tiles, or stay in L1; C's last one to four columns, when op(A) is not transposed, are
// dot products of A's rows with op(B)'s columns).
// Threads take disjoint rectangles of C and run the whole scheme on them with their own packing
// buffers: no synchronisation inside a call. A C of one row (and of up to four rows, 64 columns
// or more, where op(B) is not transposed) or of one to eight columns skips the scheme:
// matrix-vector loops read the other operand in place.
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <numeric>
#include <type_traits>

#include "common/activations.h"
#include "common/fast_math.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"
#include "cpu/vec8.h"

// FT_GEMM_AVX2: the vector kernels (AVX2 and FMA, which the AVX-512 build has too);
// FT_GEMM_AVX512: their 512-bit form, and the AVX2 instructions where 256 bits serve better
// (the 8 x 8 transposes of the packing, the dot products of the matrix-vector loops: 16 lanes
// made 256x256 @ 256x4 slower, 59 GFLOP/s against 68 on one thread).
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FT_GEMM_AVX2 1
#else
#define FT_GEMM_AVX2 0
#endif
#if FT_GEMM_AVX2 && defined(__AVX512F__)
#define FT_GEMM_AVX512 1
#else
#define FT_GEMM_AVX512 0
#endif

namespace fusedtrain::cpu::FT_ISA {

namespace {

// The micro-kernels' vector, written once for both widths: VecF holds kLanes floats, and the
// functions below are the few operations the tiles use. Masks select a vector's first lanes
// (vmask(count): none for count <= 0, all from kLanes on); a masked load reads nothing past
// them, so a row's last columns load without touching the memory beyond.
#if FT_GEMM_AVX512
using VecF = __m512;
using MaskF = __mmask16;
constexpr int64_t kLanes = 16;
inline VecF vzero() { return _mm512_setzero_ps(); }
inline VecF vset(float x) { return _mm512_set1_ps(x); }
inline VecF vload(const float* p) { return _mm512_loadu_ps(p); }
inline VecF vbroadcast(const float* p) { return _mm512_set1_ps(*p); }
inline VecF vfma(VecF a, VecF b, VecF c) { return _mm512_fmadd_ps(a, b, c); }
inline VecF vmul(VecF a, VecF b) { return _mm512_mul_ps(a, b); }
inline VecF vadd(VecF a, VecF b) { return _mm512_add_ps(a, b); }
inline void vstore(float* p, VecF v) { _mm512_storeu_ps(p, v); }
inline void vstore_aligned(float* p, VecF v) { _mm512_store_ps(p, v); }
inline MaskF vmask(int64_t count) {
  return count <= 0 ? 0 : count >= kLanes ? 0xFFFF : static_cast<MaskF>((1u << count) - 1);
}
inline VecF vload_masked(const float* p, MaskF mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline void vstore_masked(float* p, MaskF mask, VecF v) { _mm512_mask_storeu_ps(p, mask, v); }
#elif FT_GEMM_AVX2
using VecF = __m256;
using MaskF = __m256i;
constexpr int64_t kLanes = 8;
inline VecF vzero() { return _mm256_setzero_ps(); }
inline VecF vset(float x) { return _mm256_set1_ps(x); }
inline VecF vload(const float* p) { return _mm256_loadu_ps(p); }
inline VecF vbroadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline VecF vfma(VecF a, VecF b, VecF c) { return _mm256_fmadd_ps(a, b, c); }
inline VecF vmul(VecF a, VecF b) { return _mm256_mul_ps(a, b); }
inline VecF vadd(VecF a, VecF b) { return _mm256_add_ps(a, b); }
inline void vstore(float* p, VecF v) { _mm256_storeu_ps(p, v); }
inline void vstore_aligned(float* p, VecF v) { _mm256_store_ps(p, v); }
inline MaskF vmask(int64_t count) { return first_lanes(count); }
inline VecF vload_masked(const float* p, MaskF mask) { return _mm256_maskload_ps(p, mask); }
#endif

#if FT_GEMM_AVX512
// 8 x 32 tile: 16 accumulators (8 rows x 2 zmm) + 2 B vectors + 1 broadcast of 32 zmm
// registers: 16 independent multiply-adds a k step, enough to keep two 512-bit FMA pipes busy
// through their latency, for 10 loads (8 broadcasts, 2 B vectors), which two load ports issue in
// 5 cycles where the 16 FMAs take 8.
constexpr int64_t MR = 8;
constexpr int64_t NR = 32;
#elif FT_GEMM_AVX2
// 6 x 16 tile: 12 accumulators (6 rows x 2 ymm) + 2 B vectors + 1 broadcast of 16 ymm registers.
constexpr int64_t MR = 6;
constexpr int64_t NR = 16;
#else
// Portable: 4 x 8, which SSE2 / NEON compilers keep in registers.
constexpr int64_t MR = 4;
constexpr int64_t NR = 8;
#endif
#if FT_GEMM_AVX2
static_assert(NR == 2 * kLanes, "a tile row is two vectors");
#endif
// KC x NR B panel in L1 (AVX2: 20 KiB); MC x KC A block in L2 (AVX2 180 KiB, AVX-512 288 KiB);
// KC x NC B block (AVX2 3.75 MiB, AVX-512 4.5 MiB) in L3. The AVX-512 panel (48 KiB, Zen 5's
// L1D) outgrows a 32 KiB L1, yet a deeper k block ran faster there too, the C tile's loads and
// stores then amortised over more multiply-adds: on Zen 4 (32 KiB L1D, 1 thread) 1024^3 ran at
// 89 GFLOP/s with KC = 128, 97 with 320-512; 2048^3 at 87 with 128 and 95-100 with 320-512.
#if FT_GEMM_AVX512
constexpr int64_t KC = 384;
#else
constexpr int64_t KC = 320;
#endif
// k is cut into blocks of equal depth, at most KC + KC / 4: 784 = 392 + 392 rather than
// 384 + 384 + 16, whose last, shallow block loads and stores every C tile for 16 multiply-adds.
constexpr int64_t kMaxKC = KC + KC / 4;
inline int64_t k_block_depth(int64_t k) {
  const int64_t blocks = (k + kMaxKC - 1) / kMaxKC;
  return blocks > 1 ? (k + blocks - 1) / blocks : k;
}
constexpr int64_t MC = MR * 24;
constexpr int64_t NC = 3072;
// Up to this many elements (160 KiB), op(A) stays in L2 while the micro-kernel reads it in place
// across all the B panels, and packing it would only add its cost.
constexpr int64_t kInPlaceA = 40 * 1024;
// Past this many columns of C (n > 256) a larger A is packed: an untransposed A read in
// place streams MR rows along k, which up to there costs less than the packing pass. At 256
// columns, 256x512 @ 512x256 took 745 us instead of 763 on one thread; on two, where each
// thread packed all of A for its 128 columns, 397 us instead of 430 (256^3: 196 instead of
// 211). A transposed A read in place walks down its columns: it is packed past 32
// columns (512x256 @ 256x256 with A transposed took 1130 us in place against 791 packed).
constexpr int64_t kPackAColumns = 256;
constexpr int64_t kPackTransposedAColumns = 32;
// Up to this many elements (16 KiB, half of L1) the packed B block stays in L1 while the tiles
// go along C's rows (a short k or a narrow C): from Python, 256x10 @ 10x256 then runs in 25 us
// instead of 29 (C is written line after line instead of down 16-column strips).
constexpr int64_t kSmallBlockB = 4096;
// Up to this many rows of C (two AVX2 row tiles), an untransposed B is read in place: packing it
// costs a pass over B that one or two tiles do not pay back. 6x784 @ 784x512 ran in 78 us
// instead of 117, 8x784 @ 784x512 in 118 instead of 155, 12x256 @ 256x512 in 38 instead of 54;
// with three tiles or more (16x784 @ 784x512, 20x256 @ 256x4096) reading B in place was up to
// 17% slower than packing it (AVX2). The AVX-512 tiles, twice as wide, read B in place with
// profit up to 12 tiles: one thread, 24x784 @ 784x512 181 us instead of 212, 64x784 @ 784x512
// 474 instead of 521, 96x784 @ 784x512 728 instead of 750-850 (the machine's noise, +-10%,
// hid any difference past 96 rows).
#if FT_GEMM_AVX512
constexpr int64_t kInPlaceBRows = 12 * MR;
#else
constexpr int64_t kInPlaceBRows = 2 * MR;
#endif
// Those were strides of 2 and 16 KiB, whose rows all fall in a few of the L1 cache's sets and
// evict each other. Up to kInPlaceBMaxRows rows, a B whose panel rows spread over the sets (at
// most kMaxLinesPerSet lines of a panel in any one of the 64 sets of a 32 KiB, 8-way L1) is
// read in place too, the panel staying in L1 while the tiles go down it: the pass that packs B
// is then 3-6% of the product (1 thread: 100^3 23.7 -> 23.0 us, 120^3 37.7 -> 36.7, 136^3
// 54.4 -> 53.1). With more rows the unaligned loads of the panel cost more than its packing
// (1000x120 @ 120x120 1% slower); 128^3, whose 512-byte rows use 8 sets, gained nothing.
constexpr int64_t kInPlaceBMaxRows = 24 * MR;
constexpr int64_t kL1Sets = 64;
constexpr int64_t kCacheLine = 64;
constexpr int kMaxLinesPerSet = 4;
// The micro-kernel prefetches its C tile from this depth on.
constexpr int64_t kPrefetchDepth = 64;

// Per-thread packing buffers, kept between calls (OpenMP threads persist).
struct PackBuffers {
  float* a = nullptr;
  float* b = nullptr;
  ~PackBuffers() {
    std::free(a);
    std::free(b);
  }
};

float* aligned_floats(int64_t count) {
  size_t bytes = (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
  return static_cast<float*>(std::aligned_alloc(64, bytes));
}

// This thread's buffers, or null when they cannot be allocated (the caller reports it once
// outside the parallel region: an exception may not leave an OpenMP region).
PackBuffers* pack_buffers() {
  thread_local PackBuffers buffers;
  if (!buffers.a) buffers.a = aligned_floats(MC * kMaxKC);
  if (!buffers.b) buffers.b = aligned_floats(kMaxKC * NC);
  return buffers.a && buffers.b ? &buffers : nullptr;
}

struct Operand {
  const float* data;
  int64_t ld;
  bool trans;
};

// Where the micro-kernel reads an MR-row panel of op(A): element (i, p) is row[i][p * step].
// A packed panel has row[i] = panel + i and step MR; an unpacked one points into A itself
// (step 1, or lda when transposed). Rows past the edge repeat row 0: the portable kernel
// computes them and never stores them; the AVX2 edge kernels do not read them.
struct PanelA {
  const float* row[MR];
  int64_t step;
};

PanelA packed_panel(const float* panel) {
  PanelA view;
  for (int64_t i = 0; i < MR; ++i) view.row[i] = panel + i;
  view.step = MR;
  return view;
}

// Rows [row, row + rows) of a packed A block of depth kc, starting anywhere in a panel (row r is
// row r % MR of panel r / MR); rows past the last repeat the first, as in direct_panel.
PanelA packed_rows(const float* block, int64_t row, int64_t rows, int64_t kc) {
  PanelA view;
  for (int64_t i = 0; i < MR; ++i) {
    const int64_t r = row + (i < rows ? i : 0);
    view.row[i] = block + r / MR * MR * kc + r % MR;
  }
  view.step = MR;
  return view;
}

// Rows [row0, row0 + rows) x cols [col0, ...) of op(A) read in place.
PanelA direct_panel(const Operand& a, int64_t row0, int64_t rows, int64_t col0) {
  PanelA view;
  for (int64_t i = 0; i < MR; ++i) {
    int64_t row = row0 + (i < rows ? i : 0);
    view.row[i] = a.trans ? a.data + col0 * a.ld + row : a.data + row * a.ld + col0;
  }
  view.step = a.trans ? a.ld : 1;
  return view;
}

// Packs rows [row0, row0 + rows) x cols [col0, col0 + depth) of op(A) into MR-row panels:
// panel p holds, for each column, MR consecutive rows (zero past the last row).
#if FT_GEMM_AVX2
// The 8 x 8 block rows[i][p] -> columns[p][i], in registers (unpack, shuffle, then swap the
// 128-bit halves): the packing of a transposed operand without 64 scalar copies.
inline void transpose8x8(const __m256 rows[8], __m256 columns[8]) {
  __m256 pairs[8], quads[8];
  for (int i = 0; i < 8; i += 2) {
    // rows i, i+1: (r_i[0] r_{i+1}[0] r_i[1] r_{i+1}[1] | same for 4, 5), and 2, 3 | 6, 7.
    pairs[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
    pairs[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    // rows i..i+3 of columns (0|4), (1|5), (2|6), (3|7).
    quads[i] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0x44);
    quads[i + 1] = _mm256_shuffle_ps(pairs[i], pairs[i + 2], 0xEE);
    quads[i + 2] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0x44);
    quads[i + 3] = _mm256_shuffle_ps(pairs[i + 1], pairs[i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    columns[c] = _mm256_permute2f128_ps(quads[c], quads[c + 4], 0x20);
    columns[c + 4] = _mm256_permute2f128_ps(quads[c], quads[c + 4], 0x31);
  }
}

// MR (6 or 8) consecutive floats from src to dst: one vector, or 4 + 2.
inline void copy_panel_column(const float* src, float* dst) {
  static_assert(MR == 6 || MR == 8, "panels of 6 or 8 rows");
  if constexpr (MR == 8) {
    _mm256_storeu_ps(dst, _mm256_loadu_ps(src));
  } else {
    _mm_storeu_ps(dst, _mm_loadu_ps(src));
    _mm_storel_pi(reinterpret_cast<__m64*>(dst + 4),
                  _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 4))));
  }
}

// Eight columns of a full MR-row panel of a row-major A: out[MR p + i] = src[i][p].
inline void pack_a_columns8(const float* const src[MR], int64_t p, float* out) {
  __m256 rows[8], columns[8];
  for (int i = 0; i < 8; ++i) rows[i] = i < MR ? _mm256_loadu_ps(src[i] + p) : _mm256_setzero_ps();
  transpose8x8(rows, columns);
  alignas(32) float column[8];
  for (int c = 0; c < 8; ++c, out += MR) {
    if constexpr (MR == 8) {
      _mm256_storeu_ps(out, columns[c]);
    } else {
      _mm256_store_ps(column, columns[c]);
      copy_panel_column(column, out);
    }
  }
}

// Rows [p, p + 8) of a full NR-column panel of a transposed B, whose column j is the row
// src + j * ld: out[NR q + j] = src[j * ld + p + q], eight columns at a time.
inline void pack_b_rows8(const float* src, int64_t ld, int64_t p, float* out) {
  __m256 rows[8], columns[8];
  for (int group = 0; group < NR / 8; ++group) {
    for (int j = 0; j < 8; ++j) rows[j] = _mm256_loadu_ps(src + (8 * group + j) * ld + p);
    transpose8x8(rows, columns);
    for (int q = 0; q < 8; ++q) _mm256_store_ps(out + q * NR + 8 * group, columns[q]);
  }
}
#endif

// Operands stored along the panels (a transposed A, an untransposed B) are packed this many
// stored rows at a time across all the panels: each panel then receives a run of this many of
// its rows, from rows of the operand read along their length. A row at a time across the panels
// scatters small writes over all of them; panel after panel down the rows fetches each line of
// the operand again for every panel it serves.
constexpr int64_t kPackRows = 8;

void pack_a(const Operand& a, int64_t row0, int64_t rows, int64_t col0, int64_t depth, float* out) {
  if (a.trans) {
    // Panel column p is MR consecutive floats of A's stored row p (kPackRows of them at a time).
    // Packing the transposed A of a 1024^3 product took 760 us this way, 1410 panel by panel.
    for (int64_t p0 = 0; p0 < depth; p0 += kPackRows) {
      const int64_t count = depth - p0 < kPackRows ? depth - p0 : kPackRows;
      for (int64_t panel = 0; panel < rows; panel += MR) {
        const int64_t height = rows - panel < MR ? rows - panel : MR;
        const float* src = a.data + (col0 + p0) * a.ld + row0 + panel;
        float* dst = out + panel * depth + p0 * MR;
#if FT_GEMM_AVX2
        if (height == MR) {
          for (int64_t q = 0; q < count; ++q, src += a.ld, dst += MR) copy_panel_column(src, dst);
          continue;
        }
#endif
        for (int64_t q = 0; q < count; ++q, src += a.ld, dst += MR) {
          for (int64_t i = 0; i < MR; ++i) dst[i] = i < height ? src[i] : 0.0f;
        }
      }
    }
    return;
  }
  for (int64_t panel = 0; panel < rows; panel += MR) {
    int64_t height = rows - panel < MR ? rows - panel : MR;
    const float* src[MR];
    for (int64_t i = 0; i < MR; ++i) src[i] = a.data + (row0 + panel + (i < height ? i : 0)) * a.ld + col0;
    int64_t p = 0;
#if FT_GEMM_AVX2
    if (height == MR) {
      for (; p + 8 <= depth; p += 8, out += 8 * MR) pack_a_columns8(src, p, out);
    }
#endif
    for (; p < depth; ++p) {
      for (int64_t i = 0; i < MR; ++i) out[i] = i < height ? src[i][p] : 0.0f;
      out += MR;
    }
  }
}

// Packs rows [row0, row0 + depth) x cols [col0, col0 + cols) of op(B) into NR-column panels:
// panel p holds, for each row, NR consecutive columns (zero past the last column).
void pack_b(const Operand& b, int64_t row0, int64_t depth, int64_t col0, int64_t cols, float* out) {
  if (!b.trans) {
    // kPackRows rows at a time across all the whole panels (runs of 512 bytes per panel).
    // Copying 784x512 so took 54 us against 106 a row at a time across the panels (64-byte
    // writes scattered over all of them) and 64 down each panel in turn; in the product,
    // packing it went from 88 to 70 us, and 16x784 @ 784x512 from 232 to 208 us.
    const int64_t whole = cols / NR * NR;
    for (int64_t p0 = 0; p0 < depth; p0 += kPackRows) {
      const int64_t rows = depth - p0 < kPackRows ? depth - p0 : kPackRows;
      const float* src = b.data + (row0 + p0) * b.ld + col0;
      float* dst = out + p0 * NR;
      for (int64_t panel = 0; panel < whole; panel += NR, dst += depth * NR) {
        for (int64_t q = 0; q < rows; ++q) std::memcpy(dst + q * NR, src + q * b.ld + panel, NR * sizeof(float));
      }
    }
    if (whole < cols) {
      const int64_t width = cols - whole;
      float* dst = out + whole * depth;
      const float* src = b.data + row0 * b.ld + col0 + whole;
#if FT_GEMM_AVX2
      // Masked loads read the row's last columns, and zeros past them without touching memory
      // beyond: two loads and two stores a row instead of a loop of NR (104^3: -0.3 us of 27).
      const MaskF low = vmask(width), high = vmask(width - kLanes);
      for (int64_t p = 0; p < depth; ++p, dst += NR, src += b.ld) {
        vstore(dst, vload_masked(src, low));
        vstore(dst + kLanes, vload_masked(src + kLanes, high));
      }
#else
      for (int64_t p = 0; p < depth; ++p, dst += NR, src += b.ld) {
        for (int64_t j = 0; j < NR; ++j) dst[j] = j < width ? src[j] : 0.0f;
      }
#endif
    }
    return;
  }
  for (int64_t panel = 0; panel < cols; panel += NR) {
    int64_t width = cols - panel < NR ? cols - panel : NR;
    const float* src = b.data + (col0 + panel) * b.ld + row0;
    int64_t p = 0;
#if FT_GEMM_AVX2
    if (width == NR) {
      for (; p + 8 <= depth; p += 8, out += 8 * NR) pack_b_rows8(src, b.ld, p, out);
    }
#endif
    for (; p < depth; ++p) {
      for (int64_t j = 0; j < NR; ++j) out[j] = j < width ? src[j * b.ld + p] : 0.0f;
      out += NR;
    }
  }
}

// Columns [col0, col0 + cols) of an untransposed B (cols <= 8), rows [row0, row0 + depth),
// each made contiguous: out[j * depth + p] = B[row0 + p][col0 + j].
void pack_b_columns(const Operand& b, int64_t row0, int64_t depth, int64_t col0, int64_t cols, float* out) {
  const float* src = b.data + row0 * b.ld + col0;
  int64_t p = 0;
#if FT_GEMM_AVX2
  // Eight rows at a time, transposed in registers; masked loads stop at the last column.
  const __m256i lanes = first_lanes(cols);
  for (; p + 8 <= depth; p += 8) {
    __m256 rows[8], columns[8];
    for (int q = 0; q < 8; ++q) rows[q] = _mm256_maskload_ps(src + (p + q) * b.ld, lanes);
    transpose8x8(rows, columns);
    for (int64_t j = 0; j < cols; ++j) _mm256_storeu_ps(out + j * depth + p, columns[j]);
  }
#endif
  for (; p < depth; ++p) {
    for (int64_t j = 0; j < cols; ++j) out[j * depth + p] = src[p * b.ld + j];
  }
}

// How the micro-kernel steps down a B panel, row p to p + 1: NR floats in a packed panel (a
// constant, as the kernel was tuned with), ldb in a panel read in place.
struct PackedB {
  static constexpr int64_t step = NR;
};
struct InPlaceB {
  int64_t step;
};

// C (rows x cols of the tile at c) = scale_c * C + alpha * tile; with scale_c == 0, C is not
// read, so NaN left in C does not propagate (BLAS semantics for beta == 0).
void update_edge(const float* tile, float* c, int64_t ldc, int64_t rows, int64_t cols, float alpha,
                 float scale_c) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    const float* t = tile + i * NR;
    if (scale_c == 0.0f) {
      for (int64_t j = 0; j < cols; ++j) row[j] = alpha * t[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) row[j] = scale_c * row[j] + alpha * t[j];
    }
  }
}

// acc = packed A panel (depth x MR) times packed B panel (depth x NR), then
// C = scale_c * C + alpha * acc on the rows x cols tile at c: whole-width tiles straight from
// the registers; narrower ones through masked stores in the AVX-512 build (the mask registers
// cost nothing), through a small buffer in the AVX2 one (whose masked stores are slow on AMD).
#if FT_GEMM_AVX2
constexpr bool kMaskedStores = FT_GEMM_AVX512;

inline VecF scaled(VecF acc, const float* c, VecF alpha, VecF scale_c, bool read_c) {
  return read_c ? vfma(scale_c, vload(c), vmul(alpha, acc)) : vmul(alpha, acc);
}

inline void update_row(float* row, VecF acc0, VecF acc1, VecF alpha, VecF scale_c, bool read_c) {
  // Both loads before either store, as the AVX2 kernel was tuned with.
  acc0 = scaled(acc0, row, alpha, scale_c, read_c);
  acc1 = scaled(acc1, row + kLanes, alpha, scale_c, read_c);
  vstore(row, acc0);
  vstore(row + kLanes, acc1);
}

#if FT_GEMM_AVX512
// The first `cols` (at most kLanes) floats of a row of C, through masked loads and stores.
inline void update_part(float* row, VecF acc, int64_t cols, VecF alpha, VecF scale_c, bool read_c) {
  const MaskF lanes = vmask(cols);
  const VecF old = read_c ? vload_masked(row, lanes) : vzero();
  vstore_masked(row, lanes, read_c ? vfma(scale_c, old, vmul(alpha, acc)) : vmul(alpha, acc));
}
#endif

// The ROWS x cols tile at c from two accumulators a row (acc1 unused where cols <= kLanes).
template <int ROWS>
inline void store_tile(const VecF* acc0, const VecF* acc1, float* c, int64_t ldc, int64_t cols, float alpha,
                       float scale_c) {
  const VecF alpha_v = vset(alpha), scale_v = vset(scale_c);
  const bool read_c = scale_c != 0.0f;
  if (cols == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) update_row(c + i * ldc, acc0[i], acc1[i], alpha_v, scale_v, read_c);
    return;
  }
#if FT_GEMM_AVX512
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    float* row = c + i * ldc;
    if (cols <= kLanes) {
      update_part(row, acc0[i], cols, alpha_v, scale_v, read_c);
    } else {
      vstore(row, scaled(acc0[i], row, alpha_v, scale_v, read_c));
      update_part(row + kLanes, acc1[i], cols - kLanes, alpha_v, scale_v, read_c);
    }
  }
#else
  alignas(64) float tile[ROWS * NR];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) {
    vstore_aligned(tile + i * NR, acc0[i]);
    if (cols > kLanes) vstore_aligned(tile + i * NR + kLanes, acc1[i]);
  }
  update_edge(tile, c, ldc, ROWS, cols, alpha, scale_c);
#endif
}

// Tiles of ROWS rows (edge tiles of ROWS < MR compute only their own rows: at m = 128, the last
// of 22 six-row tiles has 2, and computing 6 cost 1.5-2% of the whole multiply; 4% at m = 64).
// In the AVX2 build the full 6-row tile keeps its own written-out kernel below: this template
// at ROWS = 6 compiles to the same inner loop but ran 256x256 @ 256x10 25% slower, its row
// pointers taking a trip through the stack on every tile. The AVX-512 build's full 8-row tile is
// this template. Its loops over the rows are unrolled by pragma, as micro_kernel_half's are:
// inlined elsewhere (a test harness's caller), GCC otherwise kept the 3- to 5-row accumulators
// on the stack, a 5-row tile taking 367 ns instead of 192 at depth 120. Every row, in a whole
// tile or an edge one, is one chain of multiply-adds along k, as in the AVX2 6-row kernel: a row
// of C gets the same bits wherever it sits. A second set of accumulators for odd k in 1- and
// 2-row edge tiles rounded their rows differently; it had made them faster on the AVX2 path
// (1 thread on Zen 4: 13x300 @ 300x200 21.5 us against 23.2 without it, 14x784 @ 784x512 155
// against 158), and the AVX-512 one measured the same with or without it.
template <int ROWS, class BLayout>
void micro_kernel_rows(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, float* c, int64_t ldc,
                       int64_t cols, float alpha, float scale_c) {
  const float* row[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) row[i] = a.row[i];
  const int64_t step = a.step;
  if (depth >= kPrefetchDepth) {
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + cols - 1), _MM_HINT_T0);
    }
  }
  VecF acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) acc0[i] = acc1[i] = vzero();
  for (int64_t p = 0, offset = 0; p < depth; ++p, offset += step) {
    const VecF b0 = vload(b);
    const VecF b1 = vload(b + kLanes);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      const VecF ai = vbroadcast(row[i] + offset);
      acc0[i] = vfma(ai, b0, acc0[i]);
      acc1[i] = vfma(ai, b1, acc1[i]);
    }
    b += b_layout.step;
  }
  store_tile<ROWS>(acc0, acc1, c, ldc, cols, alpha, scale_c);
}

// A packed edge panel of at most kLanes columns (the last panel when n % NR is 1 to NR / 2):
// one vector per row instead of two, which halves the work, and two sets of accumulators, for
// even and odd k, which keep as many multiply-adds in flight as the full tile has. That last
// panel had cost as much as a whole one: 104^3 went from 29.0 to 27.4 us, 100^3 from 27.0 to
// 25.2 and 72^3 from 11.0 to 10.2 (AVX2, one thread, from Python). The loops over the rows are
// unrolled by pragma: without it GCC kept the accumulator arrays on the stack, storing them
// every k step.
template <int ROWS>
void micro_kernel_half(int64_t depth, const PanelA& a, const float* b, float* c, int64_t ldc, int64_t cols,
                       float alpha, float scale_c) {
  const float* row[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) row[i] = a.row[i];
  const int64_t step = a.step;
  VecF even[ROWS], odd[ROWS];
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) even[i] = odd[i] = vzero();
  int64_t p = 0, offset = 0;
  for (; p + 2 <= depth; p += 2, offset += 2 * step, b += 2 * NR) {
    const VecF b0 = vload(b);
    const VecF b1 = vload(b + NR);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) {
      even[i] = vfma(vbroadcast(row[i] + offset), b0, even[i]);
      odd[i] = vfma(vbroadcast(row[i] + offset + step), b1, odd[i]);
    }
  }
  if (p < depth) {
    const VecF b0 = vload(b);
#pragma GCC unroll 8
    for (int i = 0; i < ROWS; ++i) even[i] = vfma(vbroadcast(row[i] + offset), b0, even[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < ROWS; ++i) even[i] = vadd(even[i], odd[i]);
  store_tile<ROWS>(even, even, c, ldc, cols, alpha, scale_c);
}

// The last whole panel of B and the half panel after it (at most kLanes columns, packed), for
// up to kWideRows rows: three vectors a row, twelve multiply-adds a k step, where the two tiles
// it replaces, a whole one and a half one, take 6 and about 4.3 cycles for 12 and 6 (the half
// one waits on its loads, a broadcast per multiply-add). In the AVX2 build twelve rows of a
// 24-column edge at depth 120 took 678 ns instead of 745; 120^3 went from 36.6 to 35.9 us.
template <int ROWS, class BLayout>
void micro_kernel_wide(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, const float* half, float* c,
                       int64_t ldc, int64_t cols, float alpha, float scale_c) {
  const float* row[ROWS];
#pragma GCC unroll 4
  for (int i = 0; i < ROWS; ++i) row[i] = a.row[i];
  const int64_t step = a.step;
  VecF acc0[ROWS], acc1[ROWS], acc2[ROWS];
#pragma GCC unroll 4
  for (int i = 0; i < ROWS; ++i) acc0[i] = acc1[i] = acc2[i] = vzero();
  for (int64_t p = 0, offset = 0; p < depth; ++p, offset += step, b += b_layout.step, half += NR) {
    const VecF b0 = vload(b), b1 = vload(b + kLanes), b2 = vload(half);
#pragma GCC unroll 4
    for (int i = 0; i < ROWS; ++i) {
      const VecF ai = vbroadcast(row[i] + offset);
      acc0[i] = vfma(ai, b0, acc0[i]);
      acc1[i] = vfma(ai, b1, acc1[i]);
      acc2[i] = vfma(ai, b2, acc2[i]);
    }
  }
  store_tile<ROWS>(acc0, acc1, c, ldc, NR, alpha, scale_c);
  store_tile<ROWS>(acc2, acc2, c + NR, ldc, cols - NR, alpha, scale_c);
}

template <class BLayout>
void micro_kernel(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, float* c, int64_t ldc,
                  int64_t rows, int64_t cols, float alpha, float scale_c) {
  if constexpr (std::is_same_v<BLayout, PackedB>) {
    if (cols <= kLanes) {
      switch (rows) {
#if FT_GEMM_AVX512
        case 8: return micro_kernel_half<8>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 7: return micro_kernel_half<7>(depth, a, b, c, ldc, cols, alpha, scale_c);
#endif
        case 6: return micro_kernel_half<6>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 5: return micro_kernel_half<5>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 4: return micro_kernel_half<4>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 3: return micro_kernel_half<3>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 2: return micro_kernel_half<2>(depth, a, b, c, ldc, cols, alpha, scale_c);
        case 1: return micro_kernel_half<1>(depth, a, b, c, ldc, cols, alpha, scale_c);
      }
    }
  }
  switch (rows) {
#if FT_GEMM_AVX512
    case 8: return micro_kernel_rows<8>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 7: return micro_kernel_rows<7>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 6: return micro_kernel_rows<6>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
#endif
    case 5: return micro_kernel_rows<5>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 4: return micro_kernel_rows<4>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 3: return micro_kernel_rows<3>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 2: return micro_kernel_rows<2>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
    case 1: return micro_kernel_rows<1>(depth, a, b, b_layout, c, ldc, cols, alpha, scale_c);
  }
#if !FT_GEMM_AVX512
  const float *a0_row = a.row[0], *a1_row = a.row[1], *a2_row = a.row[2];
  const float *a3_row = a.row[3], *a4_row = a.row[4], *a5_row = a.row[5];
  const int64_t step = a.step;
  // C's tile is read (beta != 0 or a later k block) and written when the loop ends: start
  // bringing its rows in now, behind the multiply, when the multiply is long enough to hide
  // them (with a few k steps the prefetches only add instructions: 256x10 @ 10x256 runs ~9%
  // faster without them).
  if (depth >= kPrefetchDepth) {
    for (int64_t i = 0; i < MR; ++i) {
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + cols - 1), _MM_HINT_T0);
    }
  }
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0, offset = 0; p < depth; ++p, offset += step) {
    __m256 b0 = _mm256_loadu_ps(b);
    __m256 b1 = _mm256_loadu_ps(b + 8);
    __m256 a0 = _mm256_broadcast_ss(a0_row + offset);
    c00 = _mm256_fmadd_ps(a0, b0, c00);
    c01 = _mm256_fmadd_ps(a0, b1, c01);
    __m256 a1 = _mm256_broadcast_ss(a1_row + offset);
    c10 = _mm256_fmadd_ps(a1, b0, c10);
    c11 = _mm256_fmadd_ps(a1, b1, c11);
    __m256 a2 = _mm256_broadcast_ss(a2_row + offset);
    c20 = _mm256_fmadd_ps(a2, b0, c20);
    c21 = _mm256_fmadd_ps(a2, b1, c21);
    __m256 a3 = _mm256_broadcast_ss(a3_row + offset);
    c30 = _mm256_fmadd_ps(a3, b0, c30);
    c31 = _mm256_fmadd_ps(a3, b1, c31);
    __m256 a4 = _mm256_broadcast_ss(a4_row + offset);
    c40 = _mm256_fmadd_ps(a4, b0, c40);
    c41 = _mm256_fmadd_ps(a4, b1, c41);
    __m256 a5 = _mm256_broadcast_ss(a5_row + offset);
    c50 = _mm256_fmadd_ps(a5, b0, c50);
    c51 = _mm256_fmadd_ps(a5, b1, c51);
    b += b_layout.step;
  }
  if (cols == NR) {
    const __m256 alpha_v = _mm256_set1_ps(alpha), scale_v = _mm256_set1_ps(scale_c);
    const bool read_c = scale_c != 0.0f;
    update_row(c + 0 * ldc, c00, c01, alpha_v, scale_v, read_c);
    update_row(c + 1 * ldc, c10, c11, alpha_v, scale_v, read_c);
    update_row(c + 2 * ldc, c20, c21, alpha_v, scale_v, read_c);
    update_row(c + 3 * ldc, c30, c31, alpha_v, scale_v, read_c);
    update_row(c + 4 * ldc, c40, c41, alpha_v, scale_v, read_c);
    update_row(c + 5 * ldc, c50, c51, alpha_v, scale_v, read_c);
    return;
  }
  alignas(32) float tile[MR * NR];
  _mm256_store_ps(tile + 0 * NR, c00);
  _mm256_store_ps(tile + 0 * NR + 8, c01);
  _mm256_store_ps(tile + 1 * NR, c10);
  _mm256_store_ps(tile + 1 * NR + 8, c11);
  _mm256_store_ps(tile + 2 * NR, c20);
  _mm256_store_ps(tile + 2 * NR + 8, c21);
  _mm256_store_ps(tile + 3 * NR, c30);
  _mm256_store_ps(tile + 3 * NR + 8, c31);
  _mm256_store_ps(tile + 4 * NR, c40);
  _mm256_store_ps(tile + 4 * NR + 8, c41);
  _mm256_store_ps(tile + 5 * NR, c50);
  _mm256_store_ps(tile + 5 * NR + 8, c51);
  update_edge(tile, c, ldc, MR, cols, alpha, scale_c);
#endif
}
#else
template <class BLayout>
void micro_kernel(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, float* c, int64_t ldc,
                  int64_t rows, int64_t cols, float alpha, float scale_c) {
  float acc[MR * NR] = {};
  for (int64_t p = 0, offset = 0; p < depth; ++p, offset += a.step) {
    for (int64_t i = 0; i < MR; ++i) {
      float a_value = a.row[i][offset];
      for (int64_t j = 0; j < NR; ++j) acc[i * NR + j] += a_value * b[j];
    }
    b += b_layout.step;
  }
  update_edge(acc, c, ldc, rows, cols, alpha, scale_c);
}

template <int ROWS, class BLayout>
void micro_kernel_wide(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, const float* half, float* c,
                       int64_t ldc, int64_t cols, float alpha, float scale_c) {
  micro_kernel(depth, a, b, b_layout, c, ldc, ROWS, NR, alpha, scale_c);
  micro_kernel(depth, a, half, PackedB{}, c + NR, ldc, ROWS, cols - NR, alpha, scale_c);
}
#endif

// The wide edge (micro_kernel_wide) for rows x (NR + a half panel) at c.
template <class BLayout>
void wide_edge(int64_t depth, const PanelA& a, const float* b, BLayout b_layout, const float* half, float* c,
               int64_t ldc, int64_t rows, int64_t cols, float alpha, float scale_c) {
  switch (rows) {
    case 1: return micro_kernel_wide<1>(depth, a, b, b_layout, half, c, ldc, cols, alpha, scale_c);
    case 2: return micro_kernel_wide<2>(depth, a, b, b_layout, half, c, ldc, cols, alpha, scale_c);
    case 3: return micro_kernel_wide<3>(depth, a, b, b_layout, half, c, ldc, cols, alpha, scale_c);
    default: return micro_kernel_wide<4>(depth, a, b, b_layout, half, c, ldc, cols, alpha, scale_c);
  }
}

struct Epilogue {
  float alpha;
  float beta;
  const float* bias;  // indexed by the column of C
  Activation activation;
  float param;
};

// The epilogue after the last k block: C += bias (per column), then C = activation(C).
void finish_tile(float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t col0, const Epilogue& e) {
  if (!e.bias && e.activation == Activation::None) return;
  with_activation(e.activation, [&](auto act) {
    using Act = decltype(act);
    for (int64_t i = 0; i < rows; ++i) {
      float* row = c + i * ldc;
      if (e.bias) {
        map_elements(cols, row, [&](auto value, auto bias) { return Act::forward(value + bias, e.param); }, row,
                     e.bias + col0);
      } else {
        map_elements(cols, row, [&](auto value) { return Act::forward(value, e.param); }, row);
      }
    }
  });
}

// C's last kDotColumns columns or fewer, when op(A) is not transposed, are dot products of A's
// rows, read in place, with op(B)'s columns (edge_dots, below the matrix-vector loops): a tile
// kernel would multiply 8 or 16 columns there, broadcasting every element of A. One thread:
// 100^3 23.0 -> 22.6 us, 99^3 22.9 -> 21.7, 256x256 @ 256x20 36.4 -> 29.7 (from Python). For 5
// to 8 columns, two passes of dot products cost more than even the half-width kernel (a 120-row
// edge of 8 columns at depth 120: 3.4 against 3.0 us); those go to micro_kernel_wide.
constexpr int64_t kDotColumns = 4;
// Rows at a time in micro_kernel_wide.
constexpr int64_t kWideRows = 4;
void edge_dots(const float* a, int64_t lda, const float* const* columns, int64_t cols, int64_t k, int64_t rows,
               float* c, int64_t ldc, float alpha, float scale_c);

// Whether `rows` rows of a B panel, ld floats apart, put at most kMaxLinesPerSet cache lines in
// any set of the L1 cache (the first row starting a line): the lines each row covers, counted
// set by set (a few hundred rows at most, against a product of rows x k x n multiply-adds).
bool spreads_over_l1(int64_t ld, int64_t rows) {
  constexpr int64_t row_bytes = NR * sizeof(float);
  int lines[kL1Sets] = {};
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t first = r * ld * static_cast<int64_t>(sizeof(float)) / kCacheLine;
    const int64_t last = (r * ld * static_cast<int64_t>(sizeof(float)) + row_bytes - 1) / kCacheLine;
    for (int64_t line = first; line <= last; ++line) {
      if (++lines[line % kL1Sets] > kMaxLinesPerSet) return false;
    }
  }
  return true;
}

// The whole blocked scheme on the m x n block of C at (row0, col0), on one thread. Returns
// false, having computed nothing, when the packing buffers cannot be allocated.
bool gemm_block(const Operand& a, const Operand& b, int64_t row0, int64_t m, int64_t col0, int64_t n,
                int64_t k, float* c, int64_t ldc, const Epilogue& e) {
  PackBuffers* allocated = pack_buffers();
  if (!allocated) return false;
  PackBuffers& buffers = *allocated;
  // A packed A block pays for itself when many B panels reuse it and A would not stay in L2 by
  // itself; otherwise the micro-kernel reads A in place.
  const bool pack_a_blocks = n > (a.trans ? kPackTransposedAColumns : kPackAColumns) && m * k > kInPlaceA;
  // With few rows of C each B panel serves a few row tiles, and up to kInPlaceBMaxRows a
  // panel that L1 holds serves them all from there: an untransposed B is then read in place, but
  // for its last, partial panel, which is packed (padded) as before, and for a block small enough
  // for L1.
  const int64_t depth = k_block_depth(k);
  const bool b_in_place = !b.trans && (m <= kInPlaceBRows || (m <= kInPlaceBMaxRows && spreads_over_l1(b.ld, depth)));
  for (int64_t jc = 0; jc < n; jc += NC) {
    int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k; pc += depth) {
      int64_t kc = k - pc < depth ? k - pc : depth;
      // The first k block scales C by beta (overwrites it when beta == 0); later ones add.
      float scale_c = pc == 0 ? e.beta : 1.0f;
      bool last = pc + kc == k;
      // A B block small enough for L1 is packed whole (the tiles then go along C's rows).
      const bool small_block = kc * nc <= kSmallBlockB;
      const int64_t in_place = b_in_place && !small_block ? nc / NR * NR : 0;  // columns read in place
      // The columns the tiles cover; the rest, if any, are edge_dots' (op(B)'s columns).
      const int64_t tiled = !a.trans && nc % NR <= kDotColumns ? nc / NR * NR : nc;
      pack_b(b, pc, kc, col0 + jc + in_place, tiled - in_place, buffers.b + in_place * kc);
      // A transposed B's columns are its rows; an untransposed B's are packed after the panels.
      if (!b.trans && tiled < nc) pack_b_columns(b, pc, kc, col0 + jc + tiled, nc - tiled, buffers.b + tiled * kc);
      const float* columns[kDotColumns];
      for (int64_t j = 0; j < nc - tiled; ++j) {
        columns[j] = b.trans ? b.data + (col0 + jc + tiled + j) * b.ld + pc : buffers.b + (tiled + j) * kc;
      }
      for (int64_t ic = 0; ic < m; ic += MC) {
        int64_t mc = m - ic < MC ? m - ic : MC;
        if (pack_a_blocks) pack_a(a, row0 + ic, mc, pc, kc, buffers.a);
        if (small_block) {
          // The whole B block stays in L1: the tiles go along C's rows, each A panel set up once.
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t rows = mc - ir < MR ? mc - ir : MR;
            PanelA panel =
                pack_a_blocks ? packed_panel(buffers.a + ir * kc) : direct_panel(a, row0 + ic + ir, rows, pc);
            for (int64_t jr = 0; jr < tiled; jr += NR) {
              int64_t cols = tiled - jr < NR ? tiled - jr : NR;
              float* c_tile = c + (row0 + ic + ir) * ldc + col0 + jc + jr;
              micro_kernel(kc, panel, buffers.b + jr * kc, PackedB{}, c_tile, ldc, rows, cols, e.alpha, scale_c);
              if (last) finish_tile(c_tile, ldc, rows, cols, col0 + jc + jr, e);
            }
          }
        } else {
          // One B panel stays in L1 while the tiles go down its column. (The two orders are written
          // out: a shared per-tile lambda or computed tile indices cost 3-8% at k = 10.) A last,
          // half panel goes with the whole panel before it, in wide tiles.
          const int64_t half = tiled % NR;
          const int64_t panels = half != 0 && half <= NR / 2 && tiled > NR ? tiled - half - NR : tiled;
          for (int64_t jr = 0; jr < panels; jr += NR) {
            int64_t cols = panels - jr < NR ? panels - jr : NR;
            const bool read_in_place = jr < in_place;
            for (int64_t ir = 0; ir < mc; ir += MR) {
              int64_t rows = mc - ir < MR ? mc - ir : MR;
              float* c_tile = c + (row0 + ic + ir) * ldc + col0 + jc + jr;
              PanelA panel =
                  pack_a_blocks ? packed_panel(buffers.a + ir * kc) : direct_panel(a, row0 + ic + ir, rows, pc);
              if (read_in_place) {
                micro_kernel(kc, panel, b.data + pc * b.ld + col0 + jc + jr, InPlaceB{b.ld}, c_tile, ldc, rows,
                             cols, e.alpha, scale_c);
              } else {
                micro_kernel(kc, panel, buffers.b + jr * kc, PackedB{}, c_tile, ldc, rows, cols, e.alpha, scale_c);
              }
              if (last) finish_tile(c_tile, ldc, rows, cols, col0 + jc + jr, e);
            }
          }
          const float* half_panel = buffers.b + (panels + NR) * kc;
          for (int64_t ir = 0; panels < tiled && ir < mc; ir += kWideRows) {
            const int64_t rows = mc - ir < kWideRows ? mc - ir : kWideRows, cols = tiled - panels;
            float* c_tile = c + (row0 + ic + ir) * ldc + col0 + jc + panels;
            PanelA panel =
                pack_a_blocks ? packed_rows(buffers.a, ir, rows, kc) : direct_panel(a, row0 + ic + ir, rows, pc);
            if (panels < in_place) {
              wide_edge(kc, panel, b.data + pc * b.ld + col0 + jc + panels, InPlaceB{b.ld}, half_panel, c_tile, ldc,
                        rows, cols, e.alpha, scale_c);
            } else {
              wide_edge(kc, panel, buffers.b + panels * kc, PackedB{}, half_panel, c_tile, ldc, rows, cols, e.alpha,
                        scale_c);
            }
            if (last) finish_tile(c_tile, ldc, rows, cols, col0 + jc + panels, e);
          }
        }
        if (tiled < nc) {
          float* c_edge = c + (row0 + ic) * ldc + col0 + jc + tiled;
          edge_dots(a.data + (row0 + ic) * a.ld + pc, a.ld, columns, nc - tiled, kc, mc, c_edge, ldc, e.alpha,
                    scale_c);
          if (last) finish_tile(c_edge, ldc, mc, nc - tiled, col0 + jc + tiled, e);
        }
      }
    }
  }
  return true;
}

// C = activation(beta * C + bias) for k == 0 (op(A) @ op(B) is all zeros).
void scale_only(int64_t m, int64_t n, float* c, int64_t ldc, const Epilogue& e) {
  alignas(64) float zeros[MR * NR] = {};
  for (int64_t i = 0; i < m; i += MR) {
    for (int64_t j = 0; j < n; j += NR) {
      int64_t rows = m - i < MR ? m - i : MR, cols = n - j < NR ? n - j : NR;
      update_edge(zeros, c + i * ldc + j, ldc, rows, cols, 0.0f, e.beta);
      finish_tile(c + i * ldc + j, ldc, rows, cols, j, e);
    }
  }
}

// ---- matrix-vector products: m == 1 or n == 1 ------------------------------------------------
// C is then one row or one column, and each element of the matrix operand is used once: packing
// it into panels (and, for one column, computing 16-wide tiles) would cost more than the product
// itself. Two loops cover the four cases, by which way the matrix's rows run:
//   along k:          out[i] = sum_p x[i * ld + p] * v[p]   (dot products of rows with v)
//   along the output: out[j] = sum_p v[p] * x[p * ld + j]   (v-weighted sums of rows)
// Both write the raw sums for outputs [begin, end) into out[0, end - begin).

// Rows at a time in the dot products: eight independent chains of multiply-adds.
constexpr int64_t kDotRows = 8;
// Outputs per pass (a stack buffer of sums, 8 KiB): the weighted sums keep it in L1 while they
// stream the rows of x across its whole width, which is what lets the hardware prefetch them
// (64-column strips in registers, each walking down all the rows, ran at half the speed
// from 1000 x 1000 up).
constexpr int64_t kGemvChunk = 2048;
// Up to this many rows of C (op(B) not transposed, C at least kVectorRowsMinWidth wide), the
// weighted sums read op(B) once for all of them, where the blocked product packs all of it for
// one row tile: 4x784 @ 784x512 in 62 us instead of 110 (5 or more rows gained little).
constexpr int64_t kVectorRows = 4;
constexpr int64_t kVectorRowsMinWidth = 64;
// A C of at most kNarrowColumns columns (and at least kNarrowMinRows rows) is made column by
// column.
constexpr int64_t kNarrowColumns = 8;
constexpr int64_t kNarrowMinRows = 8;

#if FT_GEMM_AVX2
// The sum of v's eight lanes added as horizontal_sums4 adds each of its vectors', so that a
// row's dot product has the same bits whichever block of rows it falls in.
inline float horizontal_sum_as4(__m256 v) {
  const __m256 pairs = _mm256_hadd_ps(v, v);
  const __m256 quads = _mm256_hadd_ps(pairs, pairs);
  return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(quads), _mm256_extractf128_ps(quads, 1)));
}

// out[j * stride + r] = dot(row r of x, v[j]) for ROWS rows and VECTORS vectors; the last partial
// vector of each row through masked loads.
template <int ROWS, int VECTORS>
inline void dot_rows(const float* x, int64_t ld, const float* const* v, int64_t k, float* out, int64_t stride) {
  __m256 acc[ROWS][VECTORS];
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < VECTORS; ++j) acc[r][j] = _mm256_setzero_ps();
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    __m256 v8[VECTORS];
    for (int j = 0; j < VECTORS; ++j) v8[j] = _mm256_loadu_ps(v[j] + p);
    for (int r = 0; r < ROWS; ++r) {
      const __m256 x8 = _mm256_loadu_ps(x + r * ld + p);
      for (int j = 0; j < VECTORS; ++j) acc[r][j] = _mm256_fmadd_ps(x8, v8[j], acc[r][j]);
    }
  }
  if (p < k) {
    const __m256i lanes = first_lanes(k - p);
    __m256 v8[VECTORS];
    for (int j = 0; j < VECTORS; ++j) v8[j] = _mm256_maskload_ps(v[j] + p, lanes);
    for (int r = 0; r < ROWS; ++r) {
      const __m256 x8 = _mm256_maskload_ps(x + r * ld + p, lanes);
      for (int j = 0; j < VECTORS; ++j) acc[r][j] = _mm256_fmadd_ps(x8, v8[j], acc[r][j]);
    }
  }
  if constexpr (ROWS < 3) {
    for (int r = 0; r < ROWS; ++r)
      for (int j = 0; j < VECTORS; ++j) out[j * stride + r] = horizontal_sum_as4(acc[r][j]);
    return;
  }
  // Each vector's sums over four rows at a time, from one reduction of their four accumulators:
  // 256x256 @ 256x3 (four rows a block) went from 5.8 to 5.2 us. Blocks of one or two rows
  // reduce each accumulator alone: padded with zeros, 256x256 @ 256x8 was 7% slower.
  const __m256 zero = _mm256_setzero_ps();
  for (int j = 0; j < VECTORS; ++j) {
    for (int r = 0; r < ROWS; r += 4) {
      const __m128 sums = horizontal_sums4(acc[r][j], r + 1 < ROWS ? acc[r + 1][j] : zero,
                                           r + 2 < ROWS ? acc[r + 2][j] : zero, r + 3 < ROWS ? acc[r + 3][j] : zero);
      if (r + 4 <= ROWS) {
        _mm_storeu_ps(out + j * stride + r, sums);
      } else {
        alignas(16) float lanes[4];
        _mm_store_ps(lanes, sums);
        for (int i = 0; r + i < ROWS; ++i) out[j * stride + r + i] = lanes[i];
      }
    }
  }
}
#else
template <int ROWS, int VECTORS>
inline void dot_rows(const float* x, int64_t ld, const float* const* v, int64_t k, float* out, int64_t stride) {
  for (int r = 0; r < ROWS; ++r)
    for (int j = 0; j < VECTORS; ++j) out[j * stride + r] = math::row_dot(x + r * ld, v[j], k);
}
#endif

// out[j * width + i - begin] = dot(row i of x, v[j]) for rows [begin, end), width = end - begin:
// ROWS rows at a time, so that ROWS x VECTORS chains of multiply-adds run side by side.
template <int VECTORS>
void gemv_dots(const float* x, int64_t ld, const float* const* v, int64_t k, int64_t begin, int64_t end,
               float* out) {
  constexpr int kRows = VECTORS == 1 ? kDotRows : 12 / VECTORS;
  static_assert(kRows >= 1, "at most 12 vectors: their rows x vectors chains live in 16 registers");
  const int64_t width = end - begin;
  int64_t i = begin;
  for (; i + kRows <= end; i += kRows) dot_rows<kRows, VECTORS>(x + i * ld, ld, v, k, out + (i - begin), width);
  for (; i < end; ++i) dot_rows<1, VECTORS>(x + i * ld, ld, v, k, out + (i - begin), width);
}

// C's rows x cols block at c (cols <= kDotColumns) = scale_c * C + alpha * the dot products of
// the rows of a (lda apart) with the columns: every row of A is read once for all of them.
void edge_dots(const float* a, int64_t lda, const float* const* columns, int64_t cols, int64_t k, int64_t rows,
               float* c, int64_t ldc, float alpha, float scale_c) {
  float sums[kDotColumns * MC];  // column j's sums at sums[j * rows]
  switch (cols) {
    case 1: gemv_dots<1>(a, lda, columns, k, 0, rows, sums); break;
    case 2: gemv_dots<2>(a, lda, columns, k, 0, rows, sums); break;
    case 3: gemv_dots<3>(a, lda, columns, k, 0, rows, sums); break;
    default: gemv_dots<4>(a, lda, columns, k, 0, rows, sums); break;
  }
  static_assert(kDotColumns == 4, "one case per width");
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    for (int64_t j = 0; j < cols; ++j) {
      const float sum = alpha * sums[j * rows + i];
      row[j] = scale_c == 0.0f ? sum : sum + scale_c * row[j];
    }
  }
}

// The vectors that weight the rows of x: vector i's element p is data[i * row_step + p * step]
// (rows of op(A) read in place: transposed or not, one or a few of them).
struct Vectors {
  const float* data;
  int64_t row_step;
  int64_t step;
  int64_t count;
};

// out[i * width + j] for each vector i, width = end - begin: four rows of x per pass over out
// (the compiler vectorizes the inner loop), each read from L1 again for every vector.
void gemv_sums(const float* x, int64_t ld, const Vectors& v, int64_t k, int64_t begin, int64_t end, float* out) {
  const int64_t width = end - begin;
  for (int64_t j = 0; j < v.count * width; ++j) out[j] = 0.0f;
  int64_t p = 0;
  for (; p + 4 <= k; p += 4) {
    const float *r0 = x + p * ld + begin, *r1 = r0 + ld, *r2 = r1 + ld, *r3 = r2 + ld;
    for (int64_t i = 0; i < v.count; ++i) {
      const float* weights = v.data + i * v.row_step + p * v.step;
      const float w0 = weights[0], w1 = weights[v.step], w2 = weights[2 * v.step], w3 = weights[3 * v.step];
      float* row = out + i * width;
      for (int64_t j = 0; j < width; ++j) row[j] += w0 * r0[j] + w1 * r1[j] + w2 * r2[j] + w3 * r3[j];
    }
  }
  for (; p < k; ++p) {
    const float* x_row = x + p * ld + begin;
    for (int64_t i = 0; i < v.count; ++i) {
      const float weight = v.data[i * v.row_step + p * v.step];
      float* row = out + i * width;
      for (int64_t j = 0; j < width; ++j) row[j] += weight * x_row[j];
    }
  }
}

// Where gemv's rows of sums go in C.
enum class GemvLayout {
  kAlongRows,    // along C's rows: sum row i, output t is C[i][t]; one bias per output (column)
  kOneColumn,    // C is one contiguous column, laid out as one row: bias[0] applies to all
  kDownColumns,  // down C's columns: sum row i, output t is C[t][i]; one bias per column i
};

// The rows x outputs of C = activation(alpha * sums + beta * C + bias), laid out in C as
// `layout` says, the sums made by `sums(begin, end, out)` for outputs [begin, end) of every row.
template <class Sums>
void gemv(int64_t rows, int64_t outputs, int64_t k, float* c, int64_t ldc, GemvLayout layout, const Epilogue& e,
          Sums&& sums) {
  // A column's one bias; none is added where there is none (adding 0 would turn -0 into +0).
  const bool add_bias_all = layout == GemvLayout::kOneColumn && e.bias;
  const float bias_all = add_bias_all ? e.bias[0] : 0.0f;
  Epilogue rest = e;  // the bias and activation left for finish_tile
  if (layout == GemvLayout::kOneColumn) rest.bias = nullptr;
  const bool down = layout == GemvLayout::kDownColumns;
  const int64_t chunk = kGemvChunk / rows;
  // Threads as for the blocked product: about 2^19 flops each.
  const int64_t min_outputs = 262144 / (k * rows) > 16 ? 262144 / (k * rows) : 16;
  parallel_for(outputs, min_outputs, [&](int64_t begin, int64_t end) {
    float buffer[kGemvChunk];
    for (int64_t first = begin; first < end; first += chunk) {
      const int64_t last = end - first < chunk ? end : first + chunk, width = last - first;
      sums(first, last, buffer);
      auto update = [&](float& out, float sum) {
        const float scaled = e.beta != 0.0f ? e.alpha * sum + e.beta * out : e.alpha * sum;
        out = add_bias_all ? scaled + bias_all : scaled;
      };
      for (int64_t i = 0; i < rows; ++i) {
        const float* sum = buffer + i * width;
        if (down) {
          for (int64_t t = 0; t < width; ++t) update(c[(first + t) * ldc + i], sum[t]);
        } else {
          float* out = c + i * ldc + first;
          for (int64_t t = 0; t < width; ++t) update(out[t], sum[t]);
        }
      }
      if (down) {
        finish_tile(c + first * ldc, ldc, width, rows, 0, rest);
      } else {
        finish_tile(c + first, ldc, rows, width, first, rest);
      }
    }
  });
}

// C's columns as dot products of op(A)'s rows with op(B)'s columns, n of them at once. A column
// of an untransposed B is strided: it is first copied into this thread's B packing buffer.
// Returns false, having computed nothing, when that buffer cannot be allocated.
bool narrow_dots(const float* a, int64_t lda, const float* b, int64_t ldb, bool trans_b, int64_t m, int64_t n,
                 int64_t k, float* c, int64_t ldc, const Epilogue& e) {
  const float* columns[kNarrowColumns];
  if (trans_b) {
    for (int64_t j = 0; j < n; ++j) columns[j] = b + j * ldb;
  } else {
    PackBuffers* buffers = k * n <= kMaxKC * NC ? pack_buffers() : nullptr;
    if (!buffers) return false;
    for (int64_t p = 0; p < k; ++p)
      for (int64_t j = 0; j < n; ++j) buffers->b[j * k + p] = b[p * ldb + j];
    for (int64_t j = 0; j < n; ++j) columns[j] = buffers->b + j * k;
  }
  gemv(n, m, k, c, ldc, GemvLayout::kDownColumns, e, [&](int64_t begin, int64_t end, float* out) {
    switch (n) {
      case 1: return gemv_dots<1>(a, lda, columns, k, begin, end, out);
      case 2: return gemv_dots<2>(a, lda, columns, k, begin, end, out);
      case 3: return gemv_dots<3>(a, lda, columns, k, begin, end, out);
      case 4: return gemv_dots<4>(a, lda, columns, k, begin, end, out);
      case 5: return gemv_dots<5>(a, lda, columns, k, begin, end, out);
      case 6: return gemv_dots<6>(a, lda, columns, k, begin, end, out);
      case 7: return gemv_dots<7>(a, lda, columns, k, begin, end, out);
      default: return gemv_dots<8>(a, lda, columns, k, begin, end, out);
    }
  });
  return true;
}

#if FT_GEMM_AVX512
// A transposed A and a narrow C (1 to 12 columns): C's rows are then A's columns, which
// run along A's stored rows, so vectors run down C's columns. For each p, two vectors of A's row
// p (32 rows of C) times the broadcast op(B)[p][j] of each column j: 2 x COLS accumulators and
// 2 + COLS loads for 2 x COLS multiply-adds. The 32-column tiles would fill 10 of their 32 lanes
// for a 10-output layer's weight gradient, and gemv_sums reloads its outputs every 4 rows. One
// thread, 256x256 @ 256x10 (A transposed): 72.6 GFLOP/s against 55.6 in 32-column tiles (NumPy
// 77.3); 784x1000 @ 1000x12: 91.3 against 60.2; 1 or 2 columns as gemv_sums. 13 to 16 columns
// fill half a tile, as fast (512x256 @ 256x16: 96.6 in tiles, 92.4 in two passes of these).
constexpr int kSumColumns = 12;  // 24 accumulators of the 32 registers
constexpr int64_t kSumRows = 2 * kLanes;

// tile[j * kSumRows + r] = sum_p a[p * lda + r] * b[p * b_row + j * b_col] for r < rows (at
// most kSumRows; masked loads stop at the last).
template <int COLS>
void column_sums(const float* a, int64_t lda, const float* b, int64_t b_row, int64_t b_col, int64_t k, int64_t rows,
                 float* tile) {
  const MaskF low = vmask(rows), high = vmask(rows - kLanes);
  VecF acc0[COLS], acc1[COLS];
#pragma GCC unroll 12
  for (int j = 0; j < COLS; ++j) acc0[j] = acc1[j] = vzero();
  for (int64_t p = 0; p < k; ++p, a += lda, b += b_row) {
    const VecF a0 = vload_masked(a, low), a1 = vload_masked(a + kLanes, high);
#pragma GCC unroll 12
    for (int j = 0; j < COLS; ++j) {
      const VecF bj = vbroadcast(b + j * b_col);
      acc0[j] = vfma(a0, bj, acc0[j]);
      acc1[j] = vfma(a1, bj, acc1[j]);
    }
  }
#pragma GCC unroll 12
  for (int j = 0; j < COLS; ++j) {
    vstore_aligned(tile + j * kSumRows, acc0[j]);
    vstore_aligned(tile + j * kSumRows + kLanes, acc1[j]);
  }
}

void transposed_sums(const float* a, int64_t lda, const float* b, int64_t ldb, bool trans_b, int64_t m, int64_t n,
                     int64_t k, float* c, int64_t ldc, const Epilogue& e) {
  // op(B)[p][j] = b[p * b_row + j * b_col].
  const int64_t b_row = trans_b ? 1 : ldb, b_col = trans_b ? ldb : 1;
  // Threads as for the blocked product: about 2^19 flops each.
  const int64_t min_rows = 262144 / (k * n) > kSumRows ? 262144 / (k * n) : kSumRows;
  parallel_for(m, min_rows, [&](int64_t begin, int64_t end) {
    alignas(64) float tile[kSumColumns * kSumRows];
    for (int64_t i0 = begin; i0 < end; i0 += kSumRows) {
      const int64_t rows = end - i0 < kSumRows ? end - i0 : kSumRows;
      switch (n) {
        case 1: column_sums<1>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 2: column_sums<2>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 3: column_sums<3>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 4: column_sums<4>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 5: column_sums<5>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 6: column_sums<6>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 7: column_sums<7>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 8: column_sums<8>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 9: column_sums<9>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 10: column_sums<10>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        case 11: column_sums<11>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
        default: column_sums<12>(a + i0, lda, b, b_row, b_col, k, rows, tile); break;
      }
      static_assert(kSumColumns == 12, "one case per width");
      for (int64_t i = 0; i < rows; ++i) {
        float* out = c + (i0 + i) * ldc;
        for (int64_t j = 0; j < n; ++j) {
          const float sum = e.alpha * tile[j * kSumRows + i];
          out[j] = e.beta == 0.0f ? sum : sum + e.beta * out[j];
        }
      }
      finish_tile(c + i0 * ldc, ldc, rows, n, 0, e);
    }
  }, kSumRows);
}
#endif

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// Splits C into grid_m x grid_n rectangles, one per thread, choosing the split that minimises
// a thread's multiply work (with tile padding) plus its packing work.
void choose_grid(int64_t m, int64_t n, int threads, int* grid_m, int* grid_n) {
  double best = -1.0;
  for (int tm = 1; tm <= threads; ++tm) {
    if (threads % tm) continue;
    int tn = threads / tm;
    double rows = static_cast<double>(round_up((m + tm - 1) / tm, MR));
    double cols = static_cast<double>(round_up((n + tn - 1) / tn, NR));
    // One FMA lane-op is ~1/16 cycle; packing an element ~1/2 cycle.
    double cost = rows * cols / 16.0 + (rows + cols) / 2.0;
    if (best < 0 || cost < best) {
      best = cost;
      *grid_m = tm;
      *grid_n = tn;
    }
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias,
          Activation activation, float activation_param) {
  if (m == 0 || n == 0) return;
  const Epilogue e{alpha, beta, bias, activation, activation_param};
  if (k == 0) {
    scale_only(m, n, c, ldc, e);
    return;
  }
  const Operand op_a{a, lda, trans_a};
  const Operand op_b{b, ldb, trans_b};

  // One column of C, or up to kVectorRows rows of it: matrix-vector loops over the stored rows
  // of the other operand, read in place. (Through the C++ API the vector or C may be strided
  // where these loops need them contiguous: a strided column goes to the narrow loops below,
  // a strided row to the blocked path.)
  if (n == 1 && ldc == 1 && (trans_b || ldb == 1)) {
    gemv(1, m, k, c, 1, GemvLayout::kOneColumn, e, [&](int64_t begin, int64_t end, float* out) {
      if (trans_a) {
        gemv_sums(a, lda, Vectors{b, 0, 1, 1}, k, begin, end, out);
      } else {
        gemv_dots<1>(a, lda, &b, k, begin, end, out);
      }
    });
    return;
  }
  if (m == 1 && trans_b && (!trans_a || lda == 1)) {
    gemv(1, n, k, c, ldc, GemvLayout::kAlongRows, e, [&](int64_t begin, int64_t end, float* out) {
      gemv_dots<1>(b, ldb, &a, k, begin, end, out);
    });
    return;
  }
  if (!trans_b && (m == 1 || (m <= kVectorRows && n >= kVectorRowsMinWidth))) {
    const Vectors rows_of_a{a, trans_a ? 1 : lda, trans_a ? lda : 1, m};
    gemv(m, n, k, c, ldc, GemvLayout::kAlongRows, e, [&](int64_t begin, int64_t end, float* out) {
      gemv_sums(b, ldb, rows_of_a, k, begin, end, out);
    });
    return;
  }
#if FT_GEMM_AVX512
  if (trans_a && n <= kSumColumns && m >= kSumRows) {
    transposed_sums(a, lda, b, ldb, trans_b, m, n, k, c, ldc, e);
    return;
  }
#endif
  // A narrow C (up to kNarrowColumns columns; one column arrives here only when strided) is
  // computed column by column, the columns of op(B) being the vectors: dot products with the
  // rows of op(A), or weighted sums of A's stored rows when op(A) is transposed. 16-column tiles
  // would multiply mostly padding.
  if (n <= kNarrowColumns && m >= kNarrowMinRows) {
    if (trans_a) {
      const Vectors columns_of_b{b, trans_b ? ldb : 1, trans_b ? 1 : ldb, n};
      gemv(n, m, k, c, ldc, GemvLayout::kDownColumns, e, [&](int64_t begin, int64_t end, float* out) {
        gemv_sums(a, lda, columns_of_b, k, begin, end, out);
      });
      return;
    }
    if (narrow_dots(a, lda, b, ldb, trans_b, m, n, k, c, ldc, e)) return;
  }

  // A thread is worth waking for about 2^19 flops (~6 us at one core's peak): below that, the
  // parallel region's start-up costs more than it saves. (Measured on 2 cores: 256x256 @ 256x10
  // and its two backward shapes run 1.2-1.7x faster on two threads from this size.)
  double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  int64_t useful = static_cast<int64_t>(flops / 524288.0);
  const int available = kernel_threads();
  int threads = static_cast<int>(useful < available ? (useful > 1 ? useful : 1) : available);
  if (threads == 1) {
    if (!gemm_block(op_a, op_b, 0, m, 0, n, k, c, ldc, e)) throw std::bad_alloc();
    return;
  }
  int grid_m = 1, grid_n = 1;
  choose_grid(m, n, threads, &grid_m, &grid_n);
  int64_t block_m = round_up((m + grid_m - 1) / grid_m, MR);
  int64_t block_n = round_up((n + grid_n - 1) / grid_n, NR);
  bool out_of_memory = false;
  // One block of C per chunk (parallel_chunks hands a block not yet started to a free thread).
  parallel_chunks(threads, threads, 1, [&](int block, int64_t, int64_t) {
    int64_t row0 = (block / grid_n) * block_m, col0 = (block % grid_n) * block_n;
    int64_t rows = m - row0 < block_m ? m - row0 : block_m;
    int64_t cols = n - col0 < block_n ? n - col0 : block_n;
    if (rows > 0 && cols > 0 && !gemm_block(op_a, op_b, row0, rows, col0, cols, k, c, ldc, e)) {
#pragma omp atomic write
      out_of_memory = true;
    }
  });
  if (out_of_memory) throw std::bad_alloc();
}

}  // namespace fusedtrain::cpu::FT_ISA
