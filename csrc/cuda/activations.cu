// Activation forward/backward kernels on the GPU: a grid-stride loop over the elements (blocks
// of 256 threads, up to 2^20 blocks) with the formulas of csrc/common/activations.h, the same
// code the CPU kernels run. The output may be the input itself (each element is read and
// written by the same thread).
#include <cuda_runtime.h>

#include "common/activations.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;

template <class Act>
__global__ void __launch_bounds__(kThreads) activation_forward_kernel(float param, const float* x, float* y,
                                                                       int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride) y[i] = Act::forward(x[i], param);
}

template <class Act>
__global__ void __launch_bounds__(kThreads) activation_backward_kernel(float param, const float* grad_output,
                                                                        const float* x, float* grad_input, int64_t n) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride) {
    grad_input[i] = Act::backward(grad_output[i], x[i], param);
  }
}

}  // namespace

void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n,
                        std::uintptr_t stream) {
  if (n == 0) return;
  with_activation(activation, [&](auto act) {
    launch("activation_forward_kernel", activation_forward_kernel<decltype(act)>, dim3(grid_for(n, kThreads)),
           dim3(kThreads), 0, stream, param, x, y, n);
  });
}

void activation_backward(Activation activation, float param, const float* grad_output, const float* x,
                         float* grad_input, int64_t n, std::uintptr_t stream) {
  if (n == 0) return;
  with_activation(activation, [&](auto act) {
    launch("activation_backward_kernel", activation_backward_kernel<decltype(act)>, dim3(grid_for(n, kThreads)),
           dim3(kThreads), 0, stream, param, grad_output, x, grad_input, n);
  });
}

}  // namespace fusedtrain::cuda
