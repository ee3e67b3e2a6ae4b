// Fused optimizer steps on the GPU: one launch updates the whole flat parameter buffer in place,
// with the per-element formulas of common/optimizers.h (the CPU's). A grid-stride loop over
// groups of 4 elements reads and writes every array as float4 when all of them are 16-byte
// aligned (then the last n % 4 elements go one by one); otherwise element by element. Blocks
// of 256 threads, up to 2^20 blocks.
#include <cuda_runtime.h>

#include <cmath>

#include "common/optimizers.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;

// Runs update(i, param[i], grad[i], state0[i], state1[i]) over all elements, where the state
// arrays (optimizer moments) may be null when the optimizer has fewer of them.
template <class Update>
__device__ __forceinline__ void for_each_element(float* param, const float* grad, float* state0, float* state1,
                                                 int64_t n, bool vector, Update update) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  int64_t tail = 0;
  if (vector) {
    float4* param4 = reinterpret_cast<float4*>(param);
    const float4* grad4 = reinterpret_cast<const float4*>(grad);
    float4* state0_4 = reinterpret_cast<float4*>(state0);
    float4* state1_4 = reinterpret_cast<float4*>(state1);
    for (int64_t i = first; i < n / 4; i += stride) {
      float4 p = param4[i];
      const float4 g = grad4[i];
      float4 s0 = state0 ? state0_4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      float4 s1 = state1 ? state1_4[i] : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      update(p.x, g.x, s0.x, s1.x);
      update(p.y, g.y, s0.y, s1.y);
      update(p.z, g.z, s0.z, s1.z);
      update(p.w, g.w, s0.w, s1.w);
      param4[i] = p;
      if (state0) state0_4[i] = s0;
      if (state1) state1_4[i] = s1;
    }
    tail = n / 4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) {
    float p = param[i];
    float s0 = state0 ? state0[i] : 0.0f;
    float s1 = state1 ? state1[i] : 0.0f;
    update(p, grad[i], s0, s1);
    param[i] = p;
    if (state0) state0[i] = s0;
    if (state1) state1[i] = s1;
  }
}

__global__ void __launch_bounds__(kThreads) sgd_kernel(float* param, const float* grad, float* velocity, int64_t n,
                                                        optim::SgdHyper hyper, bool vector) {
  if (velocity) {
    for_each_element(param, grad, velocity, nullptr, n, vector,
                     [&](float& p, float g, float& v, float&) { optim::sgd_update(p, g, &v, hyper); });
  } else {
    for_each_element(param, grad, nullptr, nullptr, n, vector,
                     [&](float& p, float g, float&, float&) { optim::sgd_update(p, g, nullptr, hyper); });
  }
}

__global__ void __launch_bounds__(kThreads) adam_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                                                         optim::AdamHyper hyper, bool vector) {
  for_each_element(param, grad, m, v, n, vector,
                   [&](float& p, float g, float& m_i, float& v_i) { optim::adam_update(p, g, m_i, v_i, hyper); });
}

__global__ void __launch_bounds__(kThreads) rmsprop_kernel(float* param, const float* grad, float* square_avg,
                                                            int64_t n, optim::RmspropHyper hyper, bool vector) {
  for_each_element(param, grad, square_avg, nullptr, n, vector,
                   [&](float& p, float g, float& s, float&) { optim::rmsprop_update(p, g, s, hyper); });
}

bool all_aligned(const void* a, const void* b, const void* c, const void* d) {
  return aligned16(a) && aligned16(b) && (c == nullptr || aligned16(c)) && (d == nullptr || aligned16(d));
}

unsigned optimizer_blocks(int64_t n) { return grid_for((n + 3) / 4, kThreads); }

}  // namespace

void sgd_step(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum, bool nesterov,
              float weight_decay, std::uintptr_t stream) {
  if (n == 0) return;
  const optim::SgdHyper hyper{lr, momentum, weight_decay, nesterov};
  // Without momentum the velocity is neither read nor written, as on the CPU.
  if (momentum == 0.0f) velocity = nullptr;
  launch("sgd_kernel", sgd_kernel, dim3(optimizer_blocks(n)), dim3(kThreads), 0, stream, param, grad, velocity, n,
         hyper, all_aligned(param, grad, velocity, nullptr));
}

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float lr, float beta1,
               float beta2, float eps, float weight_decay, bool decoupled, std::uintptr_t stream) {
  if (n == 0) return;
  const optim::AdamHyper hyper = optim::adam_hyper(lr, beta1, beta2, eps, weight_decay, decoupled, step);
  launch("adam_kernel", adam_kernel, dim3(optimizer_blocks(n)), dim3(kThreads), 0, stream, param, grad, m, v, n, hyper,
         all_aligned(param, grad, m, v));
}

void rmsprop_step(float* param, const float* grad, float* square_avg, int64_t n, float lr, float alpha, float eps,
                  float weight_decay, std::uintptr_t stream) {
  if (n == 0) return;
  const optim::RmspropHyper hyper{lr, alpha, eps, weight_decay};
  launch("rmsprop_kernel", rmsprop_kernel, dim3(optimizer_blocks(n)), dim3(kThreads), 0, stream, param, grad,
         square_avg, n, hyper, all_aligned(param, grad, square_avg, nullptr));
}

}  // namespace fusedtrain::cuda
