// GEMM: C = activation(alpha * op(A) @ op(B) + beta * C + bias), in the blocked scheme of
// Goto & van de Geijn ("Anatomy of high-performance matrix multiplication", 2008): op(B) is
// packed into kc x NR column panels and op(A) into MR x kc row panels, sized to stay in L3/L2
// and L1, and a register-blocked micro-kernel multiplies one A panel by one B panel. Packing
// also absorbs the transposes and pads the edges with zeros, so the micro-kernel only ever sees
// whole MR x NR tiles. Threads take disjoint rectangles of C and run the whole scheme on
// them with their own packing buffers: no synchronisation inside a call.
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/activations.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FT_GEMM_AVX2 1
#else
#define FT_GEMM_AVX2 0
#endif

namespace fusedtrain::cpu::FT_ISA {

namespace {

#if FT_GEMM_AVX2
// 6 x 16 tile: 12 accumulators (6 rows x 2 ymm) + 2 B vectors + 1 broadcast of 16 ymm registers.
constexpr int64_t MR = 6;
constexpr int64_t NR = 16;
#else
// Portable: 4 x 8, which SSE2 / NEON compilers keep in registers.
constexpr int64_t MR = 4;
constexpr int64_t NR = 8;
#endif
// kc x NR B panel (16 KiB at kc = 256) stays in L1; MC x kc A block (144 KiB) in L2;
// kc x NC B block (3 MiB) in L3.
constexpr int64_t KC = 320;
constexpr int64_t MC = MR * 24;
constexpr int64_t NC = NR * 192;
// Up to this many elements (160 KiB), op(A) stays in L2 while the micro-kernel reads it in place
// across all the B panels, and packing it would only add its cost.
constexpr int64_t kInPlaceA = 40 * 1024;
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
  if (!buffers.a) buffers.a = aligned_floats(MC * KC);
  if (!buffers.b) buffers.b = aligned_floats(KC * NC);
  return buffers.a && buffers.b ? &buffers : nullptr;
}

struct Operand {
  const float* data;
  int64_t ld;
  bool trans;
};

// Where the micro-kernel reads an MR-row panel of op(A): element (i, p) is row[i][p * step].
// A packed panel has row[i] = panel + i and step MR; an unpacked one points into A itself
// (step 1, or lda when transposed). Rows past the edge repeat row 0: they are computed and
// never stored.
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
// Eight columns of a full 6-row panel of a row-major A: the 6 x 8 block transposed into eight
// 6-float columns (out[6p + i] = src[i][p]) with unpack/shuffle instead of 48 scalar copies,
// half the time of the scalar loop measured on its own.
inline void pack_a_columns8(const float* const src[MR], int64_t p, float* out) {
  const __m256 r0 = _mm256_loadu_ps(src[0] + p), r1 = _mm256_loadu_ps(src[1] + p);
  const __m256 r2 = _mm256_loadu_ps(src[2] + p), r3 = _mm256_loadu_ps(src[3] + p);
  const __m256 r4 = _mm256_loadu_ps(src[4] + p), r5 = _mm256_loadu_ps(src[5] + p);
  const __m256 zero = _mm256_setzero_ps();
  // t01 = r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5], and so on for the other pairs.
  const __m256 t01_low = _mm256_unpacklo_ps(r0, r1), t01_high = _mm256_unpackhi_ps(r0, r1);
  const __m256 t23_low = _mm256_unpacklo_ps(r2, r3), t23_high = _mm256_unpackhi_ps(r2, r3);
  const __m256 t45_low = _mm256_unpacklo_ps(r4, r5), t45_high = _mm256_unpackhi_ps(r4, r5);
  // Rows 0-3 of columns c and c + 4 (low and high halves), then rows 4-5 of the same columns.
  const __m256 rows03[4] = {_mm256_shuffle_ps(t01_low, t23_low, 0x44), _mm256_shuffle_ps(t01_low, t23_low, 0xEE),
                            _mm256_shuffle_ps(t01_high, t23_high, 0x44), _mm256_shuffle_ps(t01_high, t23_high, 0xEE)};
  const __m256 rows45[4] = {_mm256_shuffle_ps(t45_low, zero, 0x44), _mm256_shuffle_ps(t45_low, zero, 0xEE),
                            _mm256_shuffle_ps(t45_high, zero, 0x44), _mm256_shuffle_ps(t45_high, zero, 0xEE)};
  for (int c = 0; c < 4; ++c) {
    float* low = out + c * MR;
    float* high = out + (c + 4) * MR;
    _mm_storeu_ps(low, _mm256_castps256_ps128(rows03[c]));
    _mm_storel_pi(reinterpret_cast<__m64*>(low + 4), _mm256_castps256_ps128(rows45[c]));
    _mm_storeu_ps(high, _mm256_extractf128_ps(rows03[c], 1));
    _mm_storel_pi(reinterpret_cast<__m64*>(high + 4), _mm256_extractf128_ps(rows45[c], 1));
  }
}
#endif

void pack_a(const Operand& a, int64_t row0, int64_t rows, int64_t col0, int64_t depth, float* out) {
  for (int64_t panel = 0; panel < rows; panel += MR) {
    int64_t height = rows - panel < MR ? rows - panel : MR;
    if (!a.trans) {
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
    } else {
      for (int64_t p = 0; p < depth; ++p) {
        const float* src = a.data + (col0 + p) * a.ld + row0 + panel;
        for (int64_t i = 0; i < MR; ++i) out[i] = i < height ? src[i] : 0.0f;
        out += MR;
      }
    }
  }
}

// Packs rows [row0, row0 + depth) x cols [col0, col0 + cols) of op(B) into NR-column panels:
// panel p holds, for each row, NR consecutive columns (zero past the last column).
void pack_b(const Operand& b, int64_t row0, int64_t depth, int64_t col0, int64_t cols, float* out) {
  for (int64_t panel = 0; panel < cols; panel += NR) {
    int64_t width = cols - panel < NR ? cols - panel : NR;
    if (!b.trans) {
      for (int64_t p = 0; p < depth; ++p) {
        const float* src = b.data + (row0 + p) * b.ld + col0 + panel;
        if (width == NR) {
          std::memcpy(out, src, NR * sizeof(float));
        } else {
          for (int64_t j = 0; j < NR; ++j) out[j] = j < width ? src[j] : 0.0f;
        }
        out += NR;
      }
    } else {
      for (int64_t p = 0; p < depth; ++p) {
        const float* src = b.data + (col0 + panel) * b.ld + row0 + p;
        for (int64_t j = 0; j < NR; ++j) out[j] = j < width ? src[j * b.ld] : 0.0f;
        out += NR;
      }
    }
  }
}

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
// C = scale_c * C + alpha * acc on the rows x cols tile at c: whole tiles straight from the
// registers, edge tiles through a small buffer.
#if FT_GEMM_AVX2
inline void update_row(float* row, __m256 acc0, __m256 acc1, __m256 alpha, __m256 scale_c, bool read_c) {
  if (read_c) {
    acc0 = _mm256_fmadd_ps(scale_c, _mm256_loadu_ps(row), _mm256_mul_ps(alpha, acc0));
    acc1 = _mm256_fmadd_ps(scale_c, _mm256_loadu_ps(row + 8), _mm256_mul_ps(alpha, acc1));
  } else {
    acc0 = _mm256_mul_ps(alpha, acc0);
    acc1 = _mm256_mul_ps(alpha, acc1);
  }
  _mm256_storeu_ps(row, acc0);
  _mm256_storeu_ps(row + 8, acc1);
}

void micro_kernel(int64_t depth, const PanelA& a, const float* b, float* c, int64_t ldc, int64_t rows,
                  int64_t cols, float alpha, float scale_c) {
  const float *a0_row = a.row[0], *a1_row = a.row[1], *a2_row = a.row[2];
  const float *a3_row = a.row[3], *a4_row = a.row[4], *a5_row = a.row[5];
  const int64_t step = a.step;
  // C's tile is read (beta != 0 or a later k block) and written when the loop ends: start
  // bringing its rows in now, behind the multiply, when the multiply is long enough to hide
  // them (with a few k steps the prefetches only add instructions: 256x10 @ 10x256 runs ~9%
  // faster without them).
  if (depth >= kPrefetchDepth) {
    for (int64_t i = 0; i < rows; ++i) {
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
    __m256 b0 = _mm256_load_ps(b);
    __m256 b1 = _mm256_load_ps(b + 8);
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
    b += NR;
  }
  if (rows == MR && cols == NR) {
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
  update_edge(tile, c, ldc, rows, cols, alpha, scale_c);
}
#else
void micro_kernel(int64_t depth, const PanelA& a, const float* b, float* c, int64_t ldc, int64_t rows,
                  int64_t cols, float alpha, float scale_c) {
  float acc[MR * NR] = {};
  for (int64_t p = 0, offset = 0; p < depth; ++p, offset += a.step) {
    for (int64_t i = 0; i < MR; ++i) {
      float a_value = a.row[i][offset];
      for (int64_t j = 0; j < NR; ++j) acc[i * NR + j] += a_value * b[j];
    }
    b += NR;
  }
  update_edge(acc, c, ldc, rows, cols, alpha, scale_c);
}
#endif

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
        const float* bias = e.bias + col0;
        for (int64_t j = 0; j < cols; ++j) row[j] = Act::forward(row[j] + bias[j], e.param);
      } else {
        for (int64_t j = 0; j < cols; ++j) row[j] = Act::forward(row[j], e.param);
      }
    }
  });
}

// The whole blocked scheme on the m x n block of C at (row0, col0), on one thread. Returns
// false, having computed nothing, when the packing buffers cannot be allocated.
bool gemm_block(const Operand& a, const Operand& b, int64_t row0, int64_t m, int64_t col0, int64_t n,
                int64_t k, float* c, int64_t ldc, const Epilogue& e) {
  PackBuffers* allocated = pack_buffers();
  if (!allocated) return false;
  PackBuffers& buffers = *allocated;
  // A packed A block pays for itself when several B panels reuse it and A would not stay in
  // L2 by itself; for narrow C (n up to two panels) or a small A the micro-kernel reads A in place.
  const bool pack_a_blocks = n > 2 * NR && m * k > kInPlaceA;
  for (int64_t jc = 0; jc < n; jc += NC) {
    int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k; pc += KC) {
      int64_t kc = k - pc < KC ? k - pc : KC;
      // The first k block scales C by beta (overwrites it when beta == 0); later ones add.
      float scale_c = pc == 0 ? e.beta : 1.0f;
      bool last = pc + kc == k;
      pack_b(b, pc, kc, col0 + jc, nc, buffers.b);
      for (int64_t ic = 0; ic < m; ic += MC) {
        int64_t mc = m - ic < MC ? m - ic : MC;
        if (pack_a_blocks) pack_a(a, row0 + ic, mc, pc, kc, buffers.a);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          int64_t cols = nc - jr < NR ? nc - jr : NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t rows = mc - ir < MR ? mc - ir : MR;
            float* c_tile = c + (row0 + ic + ir) * ldc + col0 + jc + jr;
            PanelA panel = pack_a_blocks ? packed_panel(buffers.a + ir * kc) : direct_panel(a, row0 + ic + ir, rows, pc);
            micro_kernel(kc, panel, buffers.b + jr * kc, c_tile, ldc, rows, cols, e.alpha, scale_c);
            if (last) finish_tile(c_tile, ldc, rows, cols, col0 + jc + jr, e);
          }
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
#pragma omp parallel num_threads(threads)
  {
    // The runtime may grant fewer threads than asked for: each thread walks the blocks.
    for (int block = omp_get_thread_num(); block < threads; block += omp_get_num_threads()) {
      int64_t row0 = (block / grid_n) * block_m, col0 = (block % grid_n) * block_n;
      int64_t rows = m - row0 < block_m ? m - row0 : block_m;
      int64_t cols = n - col0 < block_n ? n - col0 : block_n;
      if (rows > 0 && cols > 0 && !gemm_block(op_a, op_b, row0, rows, col0, cols, k, c, ldc, e)) {
#pragma omp atomic write
        out_of_memory = true;
      }
    }
  }
  if (out_of_memory) throw std::bad_alloc();
}

}  // namespace fusedtrain::cpu::FT_ISA
