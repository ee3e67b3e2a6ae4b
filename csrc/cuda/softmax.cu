// Row-wise softmax and its gradient on the GPU, over the last axis of a rows x cols array, with
// the exponential of common/fast_math.h (the CPU's) and max subtraction, so that no input
// overflows. Rows of up to 1024 columns get one warp each (8 per block of 256 threads); longer
// rows one block of 512 threads. Rows run in a grid-stride loop; the threads of a row each take
// every warp- or block-width-th column, in three passes (max, sum of exponentials, output).
// The output may be the input itself: each element is read and written by the same thread,
// after the reductions that every thread of the row has passed.
#include <cuda_runtime.h>

#include "common/fast_math.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 512;
constexpr int kWarpRowCols = 1024;
constexpr int kWarpsPerBlock = kThreads / kWarpSize;

// Softmax of one row (grad_output == nullptr) or the gradient s * (g - <g, s>) of the softmax
// s of x (with grad_output), by `lanes` threads with index `lane`.
template <class ReduceMax, class ReduceSum>
__device__ __forceinline__ void softmax_row(const float* x, const float* grad_output, float* out, int64_t cols,
                                            int lane, int lanes, ReduceMax reduce_max, ReduceSum reduce_sum) {
  float max_value = -INFINITY;
  for (int64_t j = lane; j < cols; j += lanes) max_value = x[j] > max_value ? x[j] : max_value;
  max_value = reduce_max(max_value);
  float exp_sum = 0.0f;
  for (int64_t j = lane; j < cols; j += lanes) exp_sum += math::exp(x[j] - max_value);
  const float inv_sum = 1.0f / reduce_sum(exp_sum);
  if (grad_output == nullptr) {
    for (int64_t j = lane; j < cols; j += lanes) out[j] = math::exp(x[j] - max_value) * inv_sum;
    return;
  }
  float dot = 0.0f;
  for (int64_t j = lane; j < cols; j += lanes) dot += grad_output[j] * (math::exp(x[j] - max_value) * inv_sum);
  dot = reduce_sum(dot);
  for (int64_t j = lane; j < cols; j += lanes) {
    const float s = math::exp(x[j] - max_value) * inv_sum;
    out[j] = s * (grad_output[j] - dot);
  }
}

__global__ void __launch_bounds__(kThreads) softmax_warp_kernel(const float* x, const float* grad_output, float* out,
                                                                 int64_t rows, int64_t cols) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t{gridDim.x} * kWarpsPerBlock;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / kWarpSize; r < rows; r += warps) {
    softmax_row(x + r * cols, grad_output ? grad_output + r * cols : nullptr, out + r * cols, cols, lane, kWarpSize,
                [](float v) { return warp_max(v); }, [](float v) { return warp_sum(v); });
  }
}

__global__ void __launch_bounds__(kRowThreads) softmax_block_kernel(const float* x, const float* grad_output,
                                                                     float* out, int64_t rows, int64_t cols) {
  __shared__ float scratch[kWarpSize];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    softmax_row(x + r * cols, grad_output ? grad_output + r * cols : nullptr, out + r * cols, cols,
                static_cast<int>(threadIdx.x), kRowThreads, [&](float v) { return block_max(v, scratch); },
                [&](float v) { return block_sum(v, scratch); });
  }
}

void launch_softmax(const float* x, const float* grad_output, float* out, int64_t rows, int64_t cols,
                    std::uintptr_t stream) {
  if (rows == 0 || cols == 0) return;
  if (cols <= kWarpRowCols) {
    launch("softmax_warp_kernel", softmax_warp_kernel, dim3(grid_for(rows, kWarpsPerBlock)), dim3(kThreads), 0, stream,
           x, grad_output, out, rows, cols);
  } else {
    launch("softmax_block_kernel", softmax_block_kernel, dim3(grid_for(rows, 1)), dim3(kRowThreads), 0, stream, x,
           grad_output, out, rows, cols);
  }
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, std::uintptr_t stream) {
  launch_softmax(x, nullptr, y, rows, cols, stream);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows, int64_t cols,
                      std::uintptr_t stream) {
  launch_softmax(x, grad_output, grad_input, rows, cols, stream);
}

}  // namespace fusedtrain::cuda
