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

#include "common/activations.h"
#include "cpu/isa.h"

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
constexpr int64_t KC = 256;
constexpr int64_t MC = MR * 24;
constexpr int64_t NC = NR * 192;

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

PackBuffers& pack_buffers() {
  thread_local PackBuffers buffers;
  if (!buffers.a) buffers.a = aligned_floats(MC * KC);
  if (!buffers.b) buffers.b = aligned_floats(KC * NC);
  return buffers;
}

struct Operand {
  const float* data;
  int64_t ld;
  bool trans;
  // Element (row, col) of op(X).
  float at(int64_t row, int64_t col) const { return trans ? data[col * ld + row] : data[row * ld + col]; }
};

// Packs rows [row0, row0 + rows) x cols [col0, col0 + depth) of op(A) into MR-row panels:
// panel p holds, for each column, MR consecutive rows (zero past the last row).
void pack_a(const Operand& a, int64_t row0, int64_t rows, int64_t col0, int64_t depth, float* out) {
  for (int64_t panel = 0; panel < rows; panel += MR) {
    int64_t height = rows - panel < MR ? rows - panel : MR;
    if (!a.trans) {
      const float* src[MR];
      for (int64_t i = 0; i < MR; ++i) src[i] = a.data + (row0 + panel + (i < height ? i : 0)) * a.ld + col0;
      for (int64_t p = 0; p < depth; ++p) {
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

// tile[MR x NR] = packed A panel (depth x MR) times packed B panel (depth x NR).
#if FT_GEMM_AVX2
void micro_kernel(int64_t depth, const float* a, const float* b, float* tile) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < depth; ++p) {
    __m256 b0 = _mm256_load_ps(b);
    __m256 b1 = _mm256_load_ps(b + 8);
    __m256 a0 = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(a0, b0, c00);
    c01 = _mm256_fmadd_ps(a0, b1, c01);
    __m256 a1 = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(a1, b0, c10);
    c11 = _mm256_fmadd_ps(a1, b1, c11);
    __m256 a2 = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(a2, b0, c20);
    c21 = _mm256_fmadd_ps(a2, b1, c21);
    __m256 a3 = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(a3, b0, c30);
    c31 = _mm256_fmadd_ps(a3, b1, c31);
    __m256 a4 = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(a4, b0, c40);
    c41 = _mm256_fmadd_ps(a4, b1, c41);
    __m256 a5 = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(a5, b0, c50);
    c51 = _mm256_fmadd_ps(a5, b1, c51);
    a += MR;
    b += NR;
  }
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
}
#else
void micro_kernel(int64_t depth, const float* a, const float* b, float* tile) {
  float acc[MR][NR] = {};
  for (int64_t p = 0; p < depth; ++p) {
    for (int64_t i = 0; i < MR; ++i) {
      for (int64_t j = 0; j < NR; ++j) acc[i][j] += a[i] * b[j];
    }
    a += MR;
    b += NR;
  }
  for (int64_t i = 0; i < MR; ++i) {
    for (int64_t j = 0; j < NR; ++j) tile[i * NR + j] = acc[i][j];
  }
}
#endif

struct Epilogue {
  float alpha;
  float beta;
  const float* bias;  // indexed by the column of C
  Activation activation;
  float param;
};

// Adds a computed tile into C (rows x cols of it are real). The first k block scales C by beta
// (or overwrites it when beta == 0); the last one adds the bias and applies the activation.
void store_tile(const float* tile, float* c, int64_t ldc, int64_t rows, int64_t cols, int64_t col0,
                bool first, bool last, const Epilogue& e) {
  for (int64_t i = 0; i < rows; ++i) {
    float* row = c + i * ldc;
    const float* t = tile + i * NR;
    if (first && e.beta == 0.0f) {
      for (int64_t j = 0; j < cols; ++j) row[j] = e.alpha * t[j];
    } else if (first && e.beta != 1.0f) {
      for (int64_t j = 0; j < cols; ++j) row[j] = e.beta * row[j] + e.alpha * t[j];
    } else {
      for (int64_t j = 0; j < cols; ++j) row[j] += e.alpha * t[j];
    }
    if (last) {
      if (e.bias) {
        for (int64_t j = 0; j < cols; ++j) row[j] += e.bias[col0 + j];
      }
      if (e.activation != Activation::None) {
        with_activation(e.activation, [&](auto act) {
          using Act = decltype(act);
          for (int64_t j = 0; j < cols; ++j) row[j] = Act::forward(row[j], e.param);
        });
      }
    }
  }
}

// The whole blocked scheme on the m x n block of C at (row0, col0), on one thread.
void gemm_block(const Operand& a, const Operand& b, int64_t row0, int64_t m, int64_t col0, int64_t n,
                int64_t k, float* c, int64_t ldc, const Epilogue& e) {
  PackBuffers& buffers = pack_buffers();
  alignas(64) float tile[MR * NR];
  for (int64_t jc = 0; jc < n; jc += NC) {
    int64_t nc = n - jc < NC ? n - jc : NC;
    for (int64_t pc = 0; pc < k; pc += KC) {
      int64_t kc = k - pc < KC ? k - pc : KC;
      bool first = pc == 0, last = pc + kc == k;
      pack_b(b, pc, kc, col0 + jc, nc, buffers.b);
      for (int64_t ic = 0; ic < m; ic += MC) {
        int64_t mc = m - ic < MC ? m - ic : MC;
        pack_a(a, row0 + ic, mc, pc, kc, buffers.a);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          int64_t cols = nc - jr < NR ? nc - jr : NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            int64_t rows = mc - ir < MR ? mc - ir : MR;
            micro_kernel(kc, buffers.a + ir * kc, buffers.b + jr * kc, tile);
            float* c_tile = c + (row0 + ic + ir) * ldc + col0 + jc + jr;
            store_tile(tile, c_tile, ldc, rows, cols, col0 + jc + jr, first, last, e);
          }
        }
      }
    }
  }
}

// C = activation(beta * C + bias) for k == 0 (op(A) @ op(B) is all zeros).
void scale_only(int64_t m, int64_t n, float* c, int64_t ldc, const Epilogue& e) {
  alignas(64) float zeros[MR * NR] = {};
  for (int64_t i = 0; i < m; i += MR) {
    for (int64_t j = 0; j < n; j += NR) {
      store_tile(zeros, c + i * ldc + j, ldc, m - i < MR ? m - i : MR, n - j < NR ? n - j : NR, j, true, true,
                 e);
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

  // A thread is worth waking for about 2^20 flops (~10 us): below that, the parallel region's
  // start-up (and, on a busy machine, waiting for a core) costs more than it saves.
  double flops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  int64_t useful = static_cast<int64_t>(flops / 1048576.0);
  int threads = static_cast<int>(useful < omp_get_max_threads() ? (useful > 1 ? useful : 1) : omp_get_max_threads());
  if (threads == 1) {
    gemm_block(op_a, op_b, 0, m, 0, n, k, c, ldc, e);
    return;
  }
  int grid_m = 1, grid_n = 1;
  choose_grid(m, n, threads, &grid_m, &grid_n);
  int64_t block_m = round_up((m + grid_m - 1) / grid_m, MR);
  int64_t block_n = round_up((n + grid_n - 1) / grid_n, NR);
#pragma omp parallel num_threads(threads)
  {
    // The runtime may grant fewer threads than asked for: each thread walks the blocks.
    for (int block = omp_get_thread_num(); block < threads; block += omp_get_num_threads()) {
      int64_t row0 = (block / grid_n) * block_m, col0 = (block % grid_n) * block_n;
      int64_t rows = m - row0 < block_m ? m - row0 : block_m;
      int64_t cols = n - col0 < block_n ? n - col0 : block_n;
      if (rows > 0 && cols > 0) gemm_block(op_a, op_b, row0, rows, col0, cols, k, c, ldc, e);
    }
  }
}

}  // namespace fusedtrain::cpu::FT_ISA
