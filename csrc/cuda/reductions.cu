// Reductions on the GPU: bias gradient (column sums), row argmax, correct-prediction counts,
// sum of squares and the global-norm clipping scale, and the last pass of every reduction
// (finish_sum) with the host read-back.
//
// - sum_of_squares_kernel: a grid-stride loop (float4 when aligned), squares accumulated in
//   double per thread, one partial per block (at most kMaxPartials blocks of 256 threads);
//   finish_sum_kernel (one block of 1024) adds the partials in a fixed order.
// - clip_scale_kernel: x *= max_norm / (norm + 1e-6) where norm = sqrt(the sum in the
//   workspace), decided on the device, so clipping needs no round trip before it scales.
// - bias_grad_kernel: blocks of 32 columns x 8 row lanes; grid.x runs over column groups and
//   grid.y over row chunks. With one chunk the block writes the column sums; with several,
//   each chunk writes its sums to the workspace and bias_grad_finish_kernel adds them in order.
// - argmax_kernel / count_correct_kernel: one warp per row (8 per block, grid-stride over rows),
//   each lane scanning every 32nd column, then a shuffle reduction that keeps the first index
//   of the maximum (NaN counting as the largest, as numpy.argmax).
#include <cuda_runtime.h>

#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"
#include "cuda/workspace.cuh"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kFinishThreads = 1024;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;

__global__ void __launch_bounds__(kFinishThreads) finish_sum_kernel(Workspace* workspace, int blocks, double scale,
                                                                     bool accumulate) {
  __shared__ double scratch[kWarpSize];
  double sum = 0.0;
  for (int i = threadIdx.x; i < blocks; i += blockDim.x) sum += workspace->partials[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) workspace->result = (accumulate ? workspace->result : 0.0) + scale * sum;
}

__global__ void store_result_kernel(const Workspace* workspace, double* result, bool count, double divisor) {
  *result = (count ? static_cast<double>(workspace->count) : workspace->result) / divisor;
}

__global__ void __launch_bounds__(kThreads) sum_of_squares_kernel(const float* x, int64_t n, bool vector,
                                                                   Workspace* workspace) {
  __shared__ double scratch[kWarpSize];
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  double sum = 0.0;
  int64_t tail = 0;
  if (vector) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    for (int64_t i = first; i < n / 4; i += stride) {
      float4 v = x4[i];
      sum += double{v.x} * v.x + double{v.y} * v.y + double{v.z} * v.z + double{v.w} * v.w;
    }
    tail = n / 4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) sum += double{x[i]} * x[i];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) workspace->partials[blockIdx.x] = sum;
}

__global__ void __launch_bounds__(kThreads) clip_scale_kernel(float* x, int64_t n, const Workspace* workspace,
                                                               double max_norm) {
  const double norm = sqrt(workspace->result);
  // NaN and inf fail `norm <= DBL_MAX`: a non-finite norm scales nothing, as on the CPU.
  if (!(norm > max_norm && norm <= 1.7976931348623157e308)) return;
  const float factor = static_cast<float>(max_norm / (norm + 1e-6));
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride) x[i] *= factor;
}

constexpr int kBiasColumns = static_cast<int>(kBiasGradColumns);
constexpr int kBiasLanes = 8;

// Column sums of rows [chunk * rows_per_chunk, ...) for the block's 32 columns. Each lane sums
// every 8th row in row order, then the 8 lane sums are added in order.
__global__ void __launch_bounds__(kThreads) bias_grad_kernel(const float* grad_output, float* grad_bias, int64_t rows,
                                                              int64_t cols, int64_t rows_per_chunk, float* partials) {
  __shared__ float lane_sums[kBiasLanes][kBiasColumns];
  const int64_t col = int64_t{blockIdx.x} * kBiasColumns + threadIdx.x;
  const int64_t begin = int64_t{blockIdx.y} * rows_per_chunk;
  const int64_t end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
  float sum = 0.0f;
  if (col < cols) {
    for (int64_t r = begin + threadIdx.y; r < end; r += kBiasLanes) sum += grad_output[r * cols + col];
  }
  lane_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    float total = 0.0f;
#pragma unroll
    for (int lane = 0; lane < kBiasLanes; ++lane) total += lane_sums[lane][threadIdx.x];
    if (gridDim.y == 1) {
      grad_bias[col] = total;
    } else {
      partials[blockIdx.y * cols + col] = total;
    }
  }
}

__global__ void __launch_bounds__(kThreads) bias_grad_finish_kernel(const float* partials, float* grad_bias,
                                                                     int64_t cols, int chunks) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t col = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; col < cols; col += stride) {
    float total = 0.0f;
    for (int chunk = 0; chunk < chunks; ++chunk) total += partials[chunk * cols + col];
    grad_bias[col] = total;
  }
}

// True when (value, index) comes before (other_value, other_index) in argmax order: a NaN
// beats a number, a larger number beats a smaller one, and a tie goes to the lower index.
__device__ __forceinline__ bool argmax_before(float value, int64_t index, float other_value, int64_t other_index) {
  const bool nan = value != value, other_nan = other_value != other_value;
  if (nan != other_nan) return nan;
  if (!nan && value != other_value) return value > other_value;
  return index < other_index;
}

// The argmax of one row, returned to every lane of the warp.
__device__ __forceinline__ int64_t warp_row_argmax(const float* row, int64_t cols, int lane) {
  float best = 0.0f;
  int64_t best_index = -1;
  for (int64_t j = lane; j < cols; j += kWarpSize) {
    const float value = row[j];
    if (best_index < 0 || argmax_before(value, j, best, best_index)) {
      best = value;
      best_index = j;
    }
  }
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const float other = __shfl_xor_sync(kFullMask, best, offset);
    const int64_t other_index = __shfl_xor_sync(kFullMask, best_index, offset);
    const bool take = other_index >= 0 && (best_index < 0 || argmax_before(other, other_index, best, best_index));
    if (take) {
      best = other;
      best_index = other_index;
    }
  }
  return best_index;
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* x, int64_t* indices, int64_t rows,
                                                           int64_t cols) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t{gridDim.x} * kWarpsPerBlock;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / kWarpSize; r < rows; r += warps) {
    const int64_t best = warp_row_argmax(x + r * cols, cols, lane);
    if (lane == 0) indices[r] = best;
  }
}

template <class Label>
__global__ void __launch_bounds__(kThreads) count_correct_kernel(const float* scores, const Label* labels,
                                                                  int64_t rows, int64_t cols, Workspace* workspace) {
  __shared__ unsigned long long scratch[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t{gridDim.x} * kWarpsPerBlock;
  unsigned long long correct = 0;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / kWarpSize; r < rows; r += warps) {
    const int64_t best = warp_row_argmax(scores + r * cols, cols, lane);
    if (lane == 0) {
      // A label outside [0, cols) is a mistake in the data, as on the CPU: its row is
      // reported (the first one, by atomicMin), not counted as a wrong prediction.
      const int64_t label = static_cast<int64_t>(labels[r]);
      if (label < 0 || label >= cols) {
        atomicMin(&workspace->first_error, static_cast<unsigned long long>(r));
      } else if (best == label) {
        ++correct;
      }
    }
  }
  correct = block_sum(correct, scratch);
  if (threadIdx.x == 0 && correct > 0) atomicAdd(&workspace->count, correct);
}

// Blocks of a first reduction pass over n elements: enough to fill the GPU, at most kMaxPartials.
int partial_blocks(int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t cap = int64_t{4} * multiprocessor_count() < kMaxPartials ? int64_t{4} * multiprocessor_count()
                                                                         : kMaxPartials;
  return static_cast<int>(wanted < 1 ? 1 : (wanted < cap ? wanted : cap));
}

unsigned row_blocks(int64_t rows) {
  return grid_for(rows, kWarpsPerBlock);
}

}  // namespace

void finish_sum(Workspace* workspace, int blocks, double scale, bool accumulate, std::uintptr_t stream) {
  launch("finish_sum_kernel", finish_sum_kernel, dim3(1), dim3(kFinishThreads), 0, stream, workspace, blocks, scale,
         accumulate);
}

void store_result(const Workspace* workspace, double* result, bool count, double divisor, std::uintptr_t stream) {
  launch("store_result_kernel", store_result_kernel, dim3(1), dim3(1), 0, stream, workspace, result, count, divisor);
}

double read_result(const Workspace* workspace, std::uintptr_t stream) {
  double result = 0.0;
  check(cudaMemcpyAsync(&result, &workspace->result, sizeof(result), cudaMemcpyDeviceToHost, as_stream(stream)),
        "cudaMemcpyAsync(result)");
  check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
  return result;
}

double read_result(void* workspace, std::uintptr_t stream) { return read_result(as_workspace(workspace), stream); }

void sum_of_squares(const float* x, int64_t n, bool accumulate, void* workspace, std::uintptr_t stream) {
  Workspace* space = as_workspace(workspace);
  const int blocks = partial_blocks(n);
  launch("sum_of_squares_kernel", sum_of_squares_kernel, dim3(blocks), dim3(kThreads), 0, stream, x, n, aligned16(x),
         space);
  finish_sum(space, blocks, 1.0, accumulate, stream);
}

void clip_scale(float* x, int64_t n, double max_norm, const void* workspace, std::uintptr_t stream) {
  if (n == 0) return;
  launch("clip_scale_kernel", clip_scale_kernel, dim3(grid_for(n, kThreads)), dim3(kThreads), 0, stream, x, n,
         static_cast<const Workspace*>(workspace), max_norm);
}

void bias_grad(const float* grad_output, float* grad_bias, int64_t rows, int64_t cols, void* workspace,
               std::uintptr_t stream) {
  if (cols == 0) return;
  // One block per column group along gridDim.x: the bindings keep this within kMaxGridBlocks.
  const int64_t column_groups = (cols + kBiasColumns - 1) / kBiasColumns;
  // Row chunks so that about two blocks per SM run, each summing at least 64 rows, within the
  // workspace's room for partial column sums and grid.y's limit.
  constexpr int64_t kPartialFloats = kMaxPartials * sizeof(double) / sizeof(float);
  const int64_t room = kPartialFloats / cols;
  int64_t chunks = (2 * multiprocessor_count() + column_groups - 1) / column_groups;
  const int64_t most_useful = (rows + 63) / 64;
  if (chunks > most_useful) chunks = most_useful;
  if (chunks > room) chunks = room;
  if (chunks > 65535) chunks = 65535;
  if (chunks < 1) chunks = 1;
  const int64_t rows_per_chunk = rows == 0 ? 1 : (rows + chunks - 1) / chunks;
  chunks = rows == 0 ? 1 : (rows + rows_per_chunk - 1) / rows_per_chunk;
  float* partials = reinterpret_cast<float*>(as_workspace(workspace)->partials);
  launch("bias_grad_kernel", bias_grad_kernel, dim3(static_cast<unsigned>(column_groups), static_cast<unsigned>(chunks)),
         dim3(kBiasColumns, kBiasLanes), 0, stream, grad_output, grad_bias, rows, cols, rows_per_chunk, partials);
  if (chunks > 1) {
    launch("bias_grad_finish_kernel", bias_grad_finish_kernel, dim3(grid_for(cols, kThreads)), dim3(kThreads), 0,
           stream, partials, grad_bias, cols, static_cast<int>(chunks));
  }
}

void argmax_rows(const float* x, int64_t* indices, int64_t rows, int64_t cols, std::uintptr_t stream) {
  if (rows == 0) return;
  launch("argmax_kernel", argmax_kernel, dim3(row_blocks(rows)), dim3(kThreads), 0, stream, x, indices, rows, cols);
}

template <class Label>
static int64_t count_correct_typed(const float* scores, const Label* labels, int64_t rows, int64_t cols,
                                   void* workspace, double* result, std::uintptr_t stream) {
  Workspace* space = as_workspace(workspace);
  check(cudaMemsetAsync(&space->count, 0, sizeof(space->count), as_stream(stream)), "cudaMemsetAsync(count)");
  check(cudaMemsetAsync(&space->first_error, 0xff, sizeof(space->first_error), as_stream(stream)),
        "cudaMemsetAsync(first_error)");
  if (rows > 0) {
    launch("count_correct_kernel", count_correct_kernel<Label>, dim3(row_blocks(rows)), dim3(kThreads), 0, stream,
           scores, labels, rows, cols, space);
  }
  if (result != nullptr) {
    store_result(space, result, true, rows > 0 ? static_cast<double>(rows) : 1.0, stream);
    return 0;
  }
  unsigned long long count = 0;
  check(cudaMemcpyAsync(&count, &space->count, sizeof(count), cudaMemcpyDeviceToHost, as_stream(stream)),
        "cudaMemcpyAsync(count)");
  check(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize");
  check_labels(space, labels, cols, "count_correct", stream);
  return static_cast<int64_t>(count);
}

int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols, void* workspace,
                      double* result, std::uintptr_t stream) {
  return count_correct_typed(scores, labels, rows, cols, workspace, result, stream);
}

int64_t count_correct(const float* scores, const int64_t* labels, int64_t rows, int64_t cols, void* workspace,
                      double* result, std::uintptr_t stream) {
  return count_correct_typed(scores, labels, rows, cols, workspace, result, stream);
}

}  // namespace fusedtrain::cuda
