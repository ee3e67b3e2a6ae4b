// Activation forward/backward kernels: a grid-stride loop over the elements, the formulas from
// csrc/common/activations.h (the same code the CPU kernels run).
#include <cuda_runtime.h>

#include "common/activations.h"
#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 65535 ? blocks : 65535);
}

template <class Act>
__global__ void activation_forward_kernel(float param, const float* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = Act::forward(x[i], param);
  }
}

template <class Act>
__global__ void activation_backward_kernel(float param, const float* grad_output,
                                           const float* x, float* grad_input, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    grad_input[i] = Act::backward(grad_output[i], x[i], param);
  }
}

}  // namespace

void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n,
                        std::uintptr_t stream) {
  if (n == 0) return;
  with_activation(activation, [&](auto act) {
    activation_forward_kernel<decltype(act)><<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        param, x, y, n);
  });
  check_launch("activation_forward_kernel");
}

void activation_backward(Activation activation, float param, const float* grad_output, const float* x,
                         float* grad_input, int64_t n, std::uintptr_t stream) {
  if (n == 0) return;
  with_activation(activation, [&](auto act) {
    activation_backward_kernel<decltype(act)>
        <<<blocks_for(n), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(param, grad_output, x,
                                                                                  grad_input, n);
  });
  check_launch("activation_backward_kernel");
}

}  // namespace fusedtrain::cuda
