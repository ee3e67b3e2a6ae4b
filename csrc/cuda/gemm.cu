// GEMM on the GPU: C = activation(alpha * op(A) @ op(B) + beta * C + bias), row-major, all four
// transposes, in two kernels that share the tiling and the epilogue.
//
// Both kernels give each block a 128 x 128 tile of C (256 threads, 8 warps as 2 along M x 4
// along N, each warp a 64 x 32 piece) and walk K in slices held in shared memory. Blocks are
// numbered along M in groups of 8 tile rows, so that consecutive blocks share tiles of A and B
// in L2. Operands are read in 16-byte vectors when the pointer, the leading dimension and the
// contiguous extent allow it (then a vector is either wholly inside the matrix or wholly
// outside), element by element otherwise; everything outside the matrices reads as zero, so the
// edge tiles need no other care. The epilogue applies alpha, beta (C is not read when beta is
// 0), the bias and the activation of common/activations.h, and writes C.
//
// - simt_gemm_kernel (FP32, CUDA cores): K slices of 8, staged through registers into two
//   shared buffers (the next slice is loaded from global memory while the current one is
//   multiplied). Shared memory holds both operands K-major, [k][m] and [k][n] with rows padded
//   to 132 floats, so each thread reads its 8 values of A and 8 of B as two float4 each and
//   accumulates an 8 x 8 outer product in registers.
// - tf32_gemm_kernel (tensor cores, allow_tf32): K slices of 16 in a 3-stage cp.async pipeline
//   (dynamic shared memory). Each operand keeps the layout of its source, so the copies are
//   straight: [m][k] rows padded to 24 floats, or [k][m] rows padded to 132. Each warp runs
//   4 x 4 mma.sync.m16n8k8 per 8-deep step on operands rounded to TF32 (cvt.rna) and
//   accumulates in float32. Within a step, the instruction's k index j stands for the slice's
//   k = 2j (j < 4) or 2(j - 4) + 1 (j >= 4), the same for A and B: a thread's two k values are
//   then adjacent, one 8-byte read in the [m][k] layout. Both paddings keep the fragment reads
//   free of bank conflicts.
#include <cuda_runtime.h>

#include "common/activations.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/ptx.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kTile = static_cast<int>(kGemmTile);  // rows and columns of C per block
constexpr int kThreads = 256;
constexpr int kGroupRows = 8;  // tile rows per group of the block order

struct Epilogue {
  float alpha;
  float beta;
  const float* bias;
  int activation;
  float param;
};

// Not inlined: the epilogue applies it at 64 places per thread, and six inlined activations at
// each would multiply the kernel's code size for a step that runs once per tile.
__device__ __noinline__ float activate(float value, int activation, float param) {
  switch (static_cast<Activation>(activation)) {
    case Activation::Relu: return act::Relu::forward(value, param);
    case Activation::LeakyRelu: return act::LeakyRelu::forward(value, param);
    case Activation::Sigmoid: return act::Sigmoid::forward(value, param);
    case Activation::Tanh: return act::Tanh::forward(value, param);
    case Activation::Gelu: return act::Gelu::forward(value, param);
    default: return value;
  }
}

// Writes kWidth consecutive values of row `row` from column `col` (the row is inside C). With
// `vector` the run is wholly inside or outside C and aligned to its width.
template <int kWidth>
__device__ __forceinline__ void store_run(float* c, int64_t ldc, int64_t row, int64_t col, int64_t n,
                                          const float (&values)[kWidth], const Epilogue& e, bool vector) {
  float* target = c + row * ldc + col;
  float result[kWidth];
  if (vector && col < n) {
    float old[kWidth];
    if (e.beta != 0.0f) {
      if constexpr (kWidth == 4) {
        float4 loaded = *reinterpret_cast<const float4*>(target);
        old[0] = loaded.x, old[1] = loaded.y, old[2] = loaded.z, old[3] = loaded.w;
      } else {
        float2 loaded = *reinterpret_cast<const float2*>(target);
        old[0] = loaded.x, old[1] = loaded.y;
      }
    }
#pragma unroll
    for (int j = 0; j < kWidth; ++j) {
      float value = e.alpha * values[j];
      if (e.beta != 0.0f) value += e.beta * old[j];
      if (e.bias) value += e.bias[col + j];
      result[j] = e.activation != 0 ? activate(value, e.activation, e.param) : value;
    }
    if constexpr (kWidth == 4) {
      *reinterpret_cast<float4*>(target) = make_float4(result[0], result[1], result[2], result[3]);
    } else {
      *reinterpret_cast<float2*>(target) = make_float2(result[0], result[1]);
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < kWidth; ++j) {
    if (col + j < n) {
      float value = e.alpha * values[j];
      if (e.beta != 0.0f) value += e.beta * target[j];
      if (e.bias) value += e.bias[col + j];
      target[j] = e.activation != 0 ? activate(value, e.activation, e.param) : value;
    }
  }
}

// The (tile row, tile column) of this block: blocks run through groups of kGroupRows tile
// rows column by column, so that the blocks resident at one time cover a compact patch of C.
// In int64_t: the grid holds up to 2^31 - 1 tiles, and a group of a wide C (kGroupRows times
// its tile columns) can hold more than int does.
__device__ __forceinline__ void tile_of_block(int64_t tiles_m, int64_t tiles_n, int64_t& tile_m, int64_t& tile_n) {
  const int64_t block = blockIdx.x;
  const int64_t group_size = kGroupRows * tiles_n;
  const int64_t first_m = block / group_size * kGroupRows;
  const int64_t rows_in_group = tiles_m - first_m < kGroupRows ? tiles_m - first_m : kGroupRows;
  const int64_t in_group = block % group_size;
  tile_m = first_m + in_group % rows_in_group;
  tile_n = in_group / rows_in_group;
}

// ---- FP32 kernel -----------------------------------------------------------------------------

namespace simt {

constexpr int kSliceK = 8;
constexpr int kStride = kTile + 4;  // the padding spreads the transposing stores over all banks

// One operand's slice loader: 128 (m or n) x 8 (k) values from global memory into registers,
// then into shared memory as [k][mn]. kKContiguous: the matrix is stored mn x k (A, or B^T),
// each thread loading 4 consecutive k of one row; otherwise it is stored k x mn, each thread
// loading 4 consecutive mn of one k.
template <bool kKContiguous, bool kVector>
struct SliceLoader {
  const float* matrix;
  int64_t ld;
  int64_t extent_mn;  // rows of op(A) or columns of op(B)
  int64_t extent_k;
  int64_t mn;         // the mn index of this thread's first value
  int k_local;
  int mn_local;
  float staged[4];

  __device__ __forceinline__ SliceLoader(const float* matrix_, int64_t ld_, int64_t extent_mn_, int64_t extent_k_,
                                         int64_t tile_mn) {
    matrix = matrix_, ld = ld_, extent_mn = extent_mn_, extent_k = extent_k_;
    const int thread = threadIdx.x;
    if constexpr (kKContiguous) {
      mn_local = thread / 2;
      k_local = thread % 2 * 4;
    } else {
      k_local = thread / 32;
      mn_local = thread % 32 * 4;
    }
    mn = tile_mn + mn_local;
  }

  __device__ __forceinline__ void load(int64_t k0) {
    const int64_t k = k0 + k_local;
    if constexpr (kKContiguous) {
      const float* source = matrix + mn * ld + k;
      if constexpr (kVector) {
        float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (mn < extent_mn && k < extent_k) value = *reinterpret_cast<const float4*>(source);
        staged[0] = value.x, staged[1] = value.y, staged[2] = value.z, staged[3] = value.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) staged[i] = mn < extent_mn && k + i < extent_k ? source[i] : 0.0f;
      }
    } else {
      const float* source = matrix + k * ld + mn;
      if constexpr (kVector) {
        float4 value = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (k < extent_k && mn < extent_mn) value = *reinterpret_cast<const float4*>(source);
        staged[0] = value.x, staged[1] = value.y, staged[2] = value.z, staged[3] = value.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) staged[i] = k < extent_k && mn + i < extent_mn ? source[i] : 0.0f;
      }
    }
  }

  __device__ __forceinline__ void store(float (*slice)[kStride]) const {
    if constexpr (kKContiguous) {
#pragma unroll
      for (int i = 0; i < 4; ++i) slice[k_local + i][mn_local] = staged[i];
    } else {
      *reinterpret_cast<float4*>(&slice[k_local][mn_local]) = make_float4(staged[0], staged[1], staged[2], staged[3]);
    }
  }
};

template <bool kTransA, bool kTransB, bool kVector>
__global__ void __launch_bounds__(kThreads, 2) simt_gemm_kernel(int64_t m, int64_t n, int64_t k, const float* a,
                                                             int64_t lda, const float* b, int64_t ldb, float* c,
                                                             int64_t ldc, Epilogue epilogue, bool vector_c) {
  __shared__ __align__(16) float a_slices[2][kSliceK][kStride];
  __shared__ __align__(16) float b_slices[2][kSliceK][kStride];

  const int64_t tiles_m = (m + kTile - 1) / kTile;
  const int64_t tiles_n = (n + kTile - 1) / kTile;
  int64_t tile_m, tile_n;
  tile_of_block(tiles_m, tiles_n, tile_m, tile_n);
  const int64_t row0 = tile_m * kTile, col0 = tile_n * kTile;

  // A is m x k (k contiguous) unless transposed; B is k x n (n contiguous) unless transposed.
  SliceLoader<!kTransA, kVector> load_a(a, lda, m, k, row0);
  SliceLoader<kTransB, kVector> load_b(b, ldb, n, k, col0);

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  // This thread's rows of the tile: row_base + {0..3} and row_base + 32 + {0..3}; columns
  // col_base + {0..3} and col_base + 16 + {0..3}.
  const int row_base = warp / 4 * 64 + lane / 4 * 4;
  const int col_base = warp % 4 * 32 + lane % 4 * 4;

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.0f;
  }

  const int64_t slices = (k + kSliceK - 1) / kSliceK;
  load_a.load(0);
  load_b.load(0);
  load_a.store(a_slices[0]);
  load_b.store(b_slices[0]);
  __syncthreads();

  for (int64_t slice = 0; slice < slices; ++slice) {
    const int buffer = static_cast<int>(slice & 1);
    const bool more = slice + 1 < slices;
    if (more) {
      load_a.load((slice + 1) * kSliceK);
      load_b.load((slice + 1) * kSliceK);
    }
#pragma unroll
    for (int kk = 0; kk < kSliceK; ++kk) {
      const float4 a_low = *reinterpret_cast<const float4*>(&a_slices[buffer][kk][row_base]);
      const float4 a_high = *reinterpret_cast<const float4*>(&a_slices[buffer][kk][row_base + 32]);
      const float4 b_low = *reinterpret_cast<const float4*>(&b_slices[buffer][kk][col_base]);
      const float4 b_high = *reinterpret_cast<const float4*>(&b_slices[buffer][kk][col_base + 16]);
      const float a_values[8] = {a_low.x, a_low.y, a_low.z, a_low.w, a_high.x, a_high.y, a_high.z, a_high.w};
      const float b_values[8] = {b_low.x, b_low.y, b_low.z, b_low.w, b_high.x, b_high.y, b_high.z, b_high.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
#pragma unroll
        for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a_values[i], b_values[j], acc[i][j]);
      }
    }
    if (more) {
      // The other buffer was last read in the previous iteration, before its closing barrier.
      load_a.store(a_slices[buffer ^ 1]);
      load_b.store(b_slices[buffer ^ 1]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t row = row0 + row_base + (i < 4 ? i : 32 + i - 4);
    if (row >= m) continue;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t col = col0 + col_base + half * 16;
      const float values[4] = {acc[i][half * 4], acc[i][half * 4 + 1], acc[i][half * 4 + 2], acc[i][half * 4 + 3]};
      store_run<4>(c, ldc, row, col, n, values, epilogue, vector_c);
    }
  }
}

}  // namespace simt

// ---- TF32 tensor-core kernel ------------------------------------------------------------------

namespace tf32 {

constexpr int kSliceK = 16;
constexpr int kStages = 3;
constexpr int kStrideK = kSliceK + 8;  // [mn][k] rows: the 8-byte fragment reads hit distinct banks
constexpr int kStrideMn = kTile + 4;   // [k][mn] rows: rows 2t (t = 0..3) start 8 banks apart

// One operand's slices in shared memory, in the layout of its source: [mn][k] when the source
// is k-contiguous (A, or B^T), [k][mn] otherwise. Each stage is 3072 or 2112 floats.
template <bool kKContiguous>
struct Operand {
  static constexpr int kStageFloats = kKContiguous ? kTile * kStrideK : kSliceK * kStrideMn;

  // The values at (mn, k) and (mn, k + 1) of a stage, k even.
  __device__ __forceinline__ static float2 pair(const float* stage, int mn, int k) {
    if constexpr (kKContiguous) {
      return *reinterpret_cast<const float2*>(stage + mn * kStrideK + k);
    } else {
      return make_float2(stage[k * kStrideMn + mn], stage[(k + 1) * kStrideMn + mn]);
    }
  }

  // Issues the asynchronous copies of the slice that starts at k0 into `stage`. Zero-filled
  // outside the matrix; with kVector, 512 copies of 16 bytes (2 per thread), else 2048 of 4.
  template <bool kVector>
  __device__ __forceinline__ static void copy(float* stage, const float* matrix, int64_t ld, int64_t tile_mn,
                                              int64_t extent_mn, int64_t k0, int64_t extent_k) {
    const int thread = threadIdx.x;
    if constexpr (kVector) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int chunk = thread + i * kThreads;
        int mn_local, k_local;
        if constexpr (kKContiguous) {
          mn_local = chunk / 4, k_local = chunk % 4 * 4;
        } else {
          k_local = chunk / 32, mn_local = chunk % 32 * 4;
        }
        const int64_t mn = tile_mn + mn_local, k = k0 + k_local;
        const bool valid = mn < extent_mn && k < extent_k;
        const float* source = valid ? (kKContiguous ? matrix + mn * ld + k : matrix + k * ld + mn) : matrix;
        float* target = kKContiguous ? stage + mn_local * kStrideK + k_local : stage + k_local * kStrideMn + mn_local;
        cp_async_16(target, source, valid);
      }
    } else {
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int element = thread + i * kThreads;
        int mn_local, k_local;
        if constexpr (kKContiguous) {
          mn_local = element / kSliceK, k_local = element % kSliceK;
        } else {
          k_local = element / kTile, mn_local = element % kTile;
        }
        const int64_t mn = tile_mn + mn_local, k = k0 + k_local;
        const bool valid = mn < extent_mn && k < extent_k;
        const float* source = valid ? (kKContiguous ? matrix + mn * ld + k : matrix + k * ld + mn) : matrix;
        float* target = kKContiguous ? stage + mn_local * kStrideK + k_local : stage + k_local * kStrideMn + mn_local;
        cp_async_4(target, source, valid);
      }
    }
  }
};

template <bool kTransA, bool kTransB>
constexpr size_t shared_bytes() {
  return sizeof(float) * kStages * (Operand<!kTransA>::kStageFloats + Operand<kTransB>::kStageFloats);
}

template <bool kTransA, bool kTransB, bool kVector>
__global__ void __launch_bounds__(kThreads, 2) tf32_gemm_kernel(int64_t m, int64_t n, int64_t k, const float* a,
                                                             int64_t lda, const float* b, int64_t ldb, float* c,
                                                             int64_t ldc, Epilogue epilogue, bool vector_c) {
  using OperandA = Operand<!kTransA>;
  using OperandB = Operand<kTransB>;
  float* a_stages = dynamic_shared<float>();
  float* b_stages = a_stages + kStages * OperandA::kStageFloats;

  const int64_t tiles_m = (m + kTile - 1) / kTile;
  const int64_t tiles_n = (n + kTile - 1) / kTile;
  int64_t tile_m, tile_n;
  tile_of_block(tiles_m, tiles_n, tile_m, tile_n);
  const int64_t row0 = tile_m * kTile, col0 = tile_n * kTile;

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int warp_row = warp / 4 * 64, warp_col = warp % 4 * 32;
  const int group = lane / 4, in_group = lane % 4;  // the g and t of the fragment layouts

  float acc[4][4][4];
#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[mt][nt][r] = 0.0f;
    }
  }

  const int64_t slices = (k + kSliceK - 1) / kSliceK;
  auto issue = [&](int64_t slice) {
    const int stage = static_cast<int>(slice % kStages);
    OperandA::template copy<kVector>(a_stages + stage * OperandA::kStageFloats, a, lda, row0, m, slice * kSliceK, k);
    OperandB::template copy<kVector>(b_stages + stage * OperandB::kStageFloats, b, ldb, col0, n, slice * kSliceK, k);
  };

  // Group s of cp.async holds slice s; a group is committed every time, empty or not, so that
  // "all but the newest kStages - 2 groups" is always "slice s and everything before it".
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < slices) issue(s);
    cp_async_commit();
  }

  for (int64_t slice = 0; slice < slices; ++slice) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    // The stage refilled now was read in the previous iteration, which every thread has left.
    if (slice + kStages - 1 < slices) issue(slice + kStages - 1);
    cp_async_commit();

    const int stage = static_cast<int>(slice % kStages);
    const float* a_stage = a_stages + stage * OperandA::kStageFloats;
    const float* b_stage = b_stages + stage * OperandB::kStageFloats;
#pragma unroll
    for (int kk = 0; kk < kSliceK; kk += 8) {
      uint32_t a_fragments[4][4];
      uint32_t b_fragments[4][2];
      const int k = kk + 2 * in_group;  // this thread's k values: k for index t, k + 1 for t + 4
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
        const int row = warp_row + mt * 16 + group;
        const float2 upper = OperandA::pair(a_stage, row, k);
        const float2 lower = OperandA::pair(a_stage, row + 8, k);
        a_fragments[mt][0] = to_tf32(upper.x);
        a_fragments[mt][1] = to_tf32(lower.x);
        a_fragments[mt][2] = to_tf32(upper.y);
        a_fragments[mt][3] = to_tf32(lower.y);
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const float2 values = OperandB::pair(b_stage, warp_col + nt * 8 + group, k);
        b_fragments[nt][0] = to_tf32(values.x);
        b_fragments[nt][1] = to_tf32(values.y);
      }
#pragma unroll
      for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
        for (int nt = 0; nt < 4; ++nt) mma_tf32_16x8x8(acc[mt][nt], a_fragments[mt], b_fragments[nt]);
      }
    }
  }
  cp_async_wait<0>();

#pragma unroll
  for (int mt = 0; mt < 4; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int64_t row = row0 + warp_row + mt * 16 + group + half * 8;
      if (row >= m) continue;
#pragma unroll
      for (int nt = 0; nt < 4; ++nt) {
        const int64_t col = col0 + warp_col + nt * 8 + in_group * 2;
        const float values[2] = {acc[mt][nt][half * 2], acc[mt][nt][half * 2 + 1]};
        store_run<2>(c, ldc, row, col, n, values, epilogue, vector_c);
      }
    }
  }
}

}  // namespace tf32

template <bool kTransA, bool kTransB>
void launch_gemm(bool use_tf32, bool vector, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float* c, int64_t ldc, const Epilogue& epilogue, bool vector_c,
                 unsigned blocks, std::uintptr_t stream) {
  if (use_tf32) {
    constexpr size_t bytes = tf32::shared_bytes<kTransA, kTransB>();
    auto kernel = vector ? tf32::tf32_gemm_kernel<kTransA, kTransB, true> : tf32::tf32_gemm_kernel<kTransA, kTransB, false>;
    // Above 48 KB a block's dynamic shared memory has to be allowed explicitly (per device).
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          "cudaFuncSetAttribute(tf32_gemm_kernel)");
    launch("tf32_gemm_kernel", kernel, dim3(blocks), dim3(kThreads), bytes, stream, m, n, k, a, lda, b, ldb, c, ldc,
           epilogue, vector_c);
  } else {
    auto kernel = vector ? simt::simt_gemm_kernel<kTransA, kTransB, true> : simt::simt_gemm_kernel<kTransA, kTransB, false>;
    launch("simt_gemm_kernel", kernel, dim3(blocks), dim3(kThreads), 0, stream, m, n, k, a, lda, b, ldb, c, ldc,
           epilogue, vector_c);
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias, Activation activation,
          float activation_param, bool allow_tf32, std::uintptr_t stream) {
  if (m <= 0 || n <= 0) return;
  // One block per tile along gridDim.x: the bindings keep this within kMaxGridBlocks.
  const int64_t tiles = ((m + kTile - 1) / kTile) * ((n + kTile - 1) / kTile);
  // 16-byte vectors need aligned rows and a contiguous extent that is a multiple of 4 (then a
  // vector never straddles the edge of a matrix): k for A and B^T, m for A^T, n for B.
  const bool vector = aligned16(a) && aligned16(b) && lda % 4 == 0 && ldb % 4 == 0 &&
                      (trans_a ? m : k) % 4 == 0 && (trans_b ? k : n) % 4 == 0;
  const bool vector_c = aligned16(c) && ldc % 4 == 0 && n % 4 == 0;
  // The TF32 kernel stores C in pairs: 8-byte alignment and an even n are enough.
  const bool pairs_c = reinterpret_cast<std::uintptr_t>(c) % 8 == 0 && ldc % 2 == 0 && n % 2 == 0;
  const Epilogue epilogue{alpha, beta, bias, static_cast<int>(activation), activation_param};
  const unsigned blocks = static_cast<unsigned>(tiles);
  const bool store_vector = allow_tf32 ? pairs_c : vector_c;
  if (!trans_a && !trans_b) {
    launch_gemm<false, false>(allow_tf32, vector, m, n, k, a, lda, b, ldb, c, ldc, epilogue, store_vector, blocks, stream);
  } else if (!trans_a && trans_b) {
    launch_gemm<false, true>(allow_tf32, vector, m, n, k, a, lda, b, ldb, c, ldc, epilogue, store_vector, blocks, stream);
  } else if (trans_a && !trans_b) {
    launch_gemm<true, false>(allow_tf32, vector, m, n, k, a, lda, b, ldb, c, ldc, epilogue, store_vector, blocks, stream);
  } else {
    launch_gemm<true, true>(allow_tf32, vector, m, n, k, a, lda, b, ldb, c, ldc, epilogue, store_vector, blocks, stream);
  }
}

}  // namespace fusedtrain::cuda
