// Loss kernels on the GPU: the loss value and its gradient in one pass, with the per-element
// terms of common/losses.h and the softmax of common/fast_math.h (the CPU's formulas).
//
// - elementwise_loss_kernel (mse, binary cross-entropy): a grid-stride loop (float4 when every
//   array is aligned), the loss accumulated in double per thread, one partial per block (at
//   most kMaxPartials blocks of 256 threads); finish_sum adds the partials in a fixed order and
//   applies the mean. The gradient may overwrite the predictions: each element is read before
//   its gradient is written, by the same thread.
// - softmax_cross_entropy_kernel: one warp per row for up to 1024 classes (8 rows per block in
//   flight), one block of 512 threads per row above; rows in a grid-stride loop. Three passes
//   over the row (max, sum of exp(z - max), gradient), the loss of the row in double. A label
//   outside [0, classes) is not used: the row's index goes to the workspace (atomicMin, so the
//   first bad row is reported) and the host raises after reading the loss back.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common/fast_math.h"
#include "common/losses.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"
#include "cuda/workspace.cuh"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRowThreads = 512;            // one block per row, for many classes
constexpr int kWarpRowClasses = 1024;       // up to this many classes, one warp per row
constexpr int kWarpsPerBlock = kThreads / kWarpSize;

struct MseTerm {
  __device__ __forceinline__ static float value(float pred, float target) { return loss::mse_value(pred, target); }
  __device__ __forceinline__ static float grad(float pred, float target) { return loss::mse_grad(pred, target); }
};

struct BceTerm {
  __device__ __forceinline__ static float value(float z, float target) { return loss::bce_logits_value(z, target); }
  __device__ __forceinline__ static float grad(float z, float target) { return loss::bce_logits_grad(z, target); }
};

template <class Term>
__device__ __forceinline__ float loss_element(float a, float b, float scale, double& sum) {
  sum += static_cast<double>(Term::value(a, b));
  return scale * Term::grad(a, b);
}

template <class Term>
__global__ void __launch_bounds__(kThreads) elementwise_loss_kernel(const float* a, const float* b, float* grad,
                                                                     int64_t n, float scale, bool vector,
                                                                     Workspace* workspace) {
  __shared__ double scratch[kWarpSize];
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  double sum = 0.0;
  int64_t tail = 0;
  if (vector) {
    const float4* a4 = reinterpret_cast<const float4*>(a);
    const float4* b4 = reinterpret_cast<const float4*>(b);
    for (int64_t i = first; i < n / 4; i += stride) {
      const float4 x = a4[i], y = b4[i];
      float4 g;
      g.x = loss_element<Term>(x.x, y.x, scale, sum);
      g.y = loss_element<Term>(x.y, y.y, scale, sum);
      g.z = loss_element<Term>(x.z, y.z, scale, sum);
      g.w = loss_element<Term>(x.w, y.w, scale, sum);
      if (grad) reinterpret_cast<float4*>(grad)[i] = g;
    }
    tail = n / 4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) {
    const float g = loss_element<Term>(a[i], b[i], scale, sum);
    if (grad) grad[i] = g;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) workspace->partials[blockIdx.x] = sum;
}

// The softmax cross-entropy of one row, computed by `lanes` threads (a warp or a block) that
// each take every lanes-th column; `reduce_max` and `reduce_sum` combine over those threads.
// Returns the row's loss (meaningful in every thread) and writes the gradient row when given.
template <class Label, class ReduceMax, class ReduceSum>
__device__ __forceinline__ double softmax_cross_entropy_row(const float* z, const Label* labels, float* g,
                                                            int64_t row, int64_t classes, float scale, int lane,
                                                            int lanes, Workspace* workspace, ReduceMax reduce_max,
                                                            ReduceSum reduce_sum) {
  const int64_t label = static_cast<int64_t>(labels[row]);
  const bool label_valid = label >= 0 && label < classes;
  // z[label] is read before any thread writes g (which may be z itself): the reductions below
  // synchronize the threads before the gradient pass.
  const float label_logit = label_valid ? z[label] : 0.0f;
  float max_value = -INFINITY;
  for (int64_t j = lane; j < classes; j += lanes) max_value = z[j] > max_value ? z[j] : max_value;
  max_value = reduce_max(max_value);
  float exp_sum = 0.0f;
  for (int64_t j = lane; j < classes; j += lanes) exp_sum += math::exp(z[j] - max_value);
  exp_sum = reduce_sum(exp_sum);
  if (g) {
    const float inv_sum = scale / exp_sum;
    for (int64_t j = lane; j < classes; j += lanes) {
      float value = math::exp(z[j] - max_value) * inv_sum;
      if (j == label) value -= scale;
      g[j] = value;
    }
  }
  if (!label_valid) {
    if (lane == 0) atomicMin(&workspace->first_error, static_cast<unsigned long long>(row));
    return 0.0;
  }
  return static_cast<double>(logf(exp_sum)) + (static_cast<double>(max_value) - label_logit);
}

template <class Label>
__global__ void __launch_bounds__(kThreads) softmax_cross_entropy_warp_kernel(const float* logits, const Label* labels,
                                                                               float* grad, int64_t rows,
                                                                               int64_t classes, float scale,
                                                                               Workspace* workspace) {
  __shared__ double scratch[kWarpSize];
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = int64_t{gridDim.x} * kWarpsPerBlock;
  double sum = 0.0;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / kWarpSize; r < rows; r += warps) {
    const double row_loss = softmax_cross_entropy_row(
        logits + r * classes, labels, grad ? grad + r * classes : nullptr, r, classes, scale, lane, kWarpSize,
        workspace, [](float v) { return warp_max(v); }, [](float v) { return warp_sum(v); });
    if (lane == 0) sum += row_loss;
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) workspace->partials[blockIdx.x] = sum;
}

template <class Label>
__global__ void __launch_bounds__(kRowThreads) softmax_cross_entropy_block_kernel(const float* logits,
                                                                                   const Label* labels, float* grad,
                                                                                   int64_t rows, int64_t classes,
                                                                                   float scale, Workspace* workspace) {
  __shared__ float row_scratch[kWarpSize];
  __shared__ double scratch[kWarpSize];
  double sum = 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const double row_loss = softmax_cross_entropy_row(
        logits + r * classes, labels, grad ? grad + r * classes : nullptr, r, classes, scale,
        static_cast<int>(threadIdx.x), kRowThreads, workspace,
        [&](float v) { return block_max(v, row_scratch); }, [&](float v) { return block_sum(v, row_scratch); });
    if (threadIdx.x == 0) sum += row_loss;
    // The next row's first reduction reuses row_scratch; block_max begins with a barrier.
  }
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) workspace->partials[blockIdx.x] = sum;
}

int partial_blocks(int64_t work, int per_block) {
  const int64_t wanted = (work + per_block - 1) / per_block;
  const int64_t sms = multiprocessor_count();
  const int64_t cap = 4 * sms < kMaxPartials ? 4 * sms : kMaxPartials;
  return static_cast<int>(wanted < 1 ? 1 : (wanted < cap ? wanted : cap));
}

template <class Term>
double elementwise_loss(const char* name, const float* a, const float* b, float* grad, int64_t n, Reduction reduction,
                        void* workspace, double* result, std::uintptr_t stream) {
  Workspace* space = as_workspace(workspace);
  if (n == 0) {
    if (result != nullptr) check(cudaMemsetAsync(result, 0, sizeof(double), as_stream(stream)), "cudaMemsetAsync");
    return 0.0;
  }
  const float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(n)) : 1.0f;
  const bool vector = aligned16(a) && aligned16(b) && (grad == nullptr || aligned16(grad));
  const int blocks = partial_blocks(n, kThreads * 4);
  launch(name, elementwise_loss_kernel<Term>, dim3(blocks), dim3(kThreads), 0, stream, a, b, grad, n, scale, vector,
         space);
  finish_sum(space, blocks, reduction == Reduction::Mean ? 1.0 / static_cast<double>(n) : 1.0, false, stream);
  if (result != nullptr) {
    store_result(space, result, false, 1.0, stream);
    return 0.0;
  }
  return read_result(space, stream);
}

template <class Label>
double softmax_cross_entropy(const float* logits, const Label* labels, float* grad, int64_t rows, int64_t classes,
                             Reduction reduction, void* workspace, double* result, std::uintptr_t stream) {
  Workspace* space = as_workspace(workspace);
  if (rows == 0) {
    if (result != nullptr) check(cudaMemsetAsync(result, 0, sizeof(double), as_stream(stream)), "cudaMemsetAsync");
    return 0.0;
  }
  const float scale = reduction == Reduction::Mean ? static_cast<float>(1.0 / static_cast<double>(rows)) : 1.0f;
  check(cudaMemsetAsync(&space->first_error, 0xff, sizeof(space->first_error), as_stream(stream)),
        "cudaMemsetAsync(first_error)");
  int blocks;
  if (classes <= kWarpRowClasses) {
    blocks = partial_blocks(rows, kWarpsPerBlock);
    launch("softmax_cross_entropy_warp_kernel", softmax_cross_entropy_warp_kernel<Label>, dim3(blocks), dim3(kThreads),
           0, stream, logits, labels, grad, rows, classes, scale, space);
  } else {
    blocks = partial_blocks(rows, 1);
    launch("softmax_cross_entropy_block_kernel", softmax_cross_entropy_block_kernel<Label>, dim3(blocks),
           dim3(kRowThreads), 0, stream, logits, labels, grad, rows, classes, scale, space);
  }
  finish_sum(space, blocks, reduction == Reduction::Mean ? 1.0 / static_cast<double>(rows) : 1.0, false, stream);
  if (result != nullptr) {
    store_result(space, result, false, 1.0, stream);
    return 0.0;
  }
  const double loss = read_result(space, stream);
  check_labels(space, labels, classes, "softmax_cross_entropy_loss", stream);
  return loss;
}

}  // namespace

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, Reduction reduction, void* workspace,
                double* result, std::uintptr_t stream) {
  return elementwise_loss<MseTerm>("mse_loss_kernel", pred, target, grad, n, reduction, workspace, result, stream);
}

double binary_cross_entropy_loss(const float* logits, const float* target, float* grad, int64_t n,
                                 Reduction reduction, void* workspace, double* result, std::uintptr_t stream) {
  return elementwise_loss<BceTerm>("binary_cross_entropy_loss_kernel", logits, target, grad, n, reduction, workspace,
                                   result, stream);
}

double softmax_cross_entropy_loss(const float* logits, const int32_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction, void* workspace, double* result,
                                  std::uintptr_t stream) {
  return softmax_cross_entropy(logits, labels, grad, rows, classes, reduction, workspace, result, stream);
}

double softmax_cross_entropy_loss(const float* logits, const int64_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction, void* workspace, double* result,
                                  std::uintptr_t stream) {
  return softmax_cross_entropy(logits, labels, grad, rows, classes, reduction, workspace, result, stream);
}

}  // namespace fusedtrain::cuda
