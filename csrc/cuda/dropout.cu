// Dropout on the GPU from the Philox stream of common/philox.h: element i is kept when word
// i % 4 of philox::dropout_block(seed, step, i / 4) passes philox::keeps, exactly as on the CPU,
// so the same seed and step give the same mask on both devices. The forward kernel gives each
// thread one group of 4 elements (one Philox block) in a grid-stride loop, with float4 and
// 4-byte mask accesses when the arrays are aligned and the group is whole. The backward kernel
// is elementwise, float4 with a 4-byte mask read when aligned. Blocks of 256 threads.
#include <cuda_runtime.h>

#include "common/philox.h"
#include "cuda/device.cuh"
#include "cuda/launch.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) dropout_forward_kernel(const float* x, float* y, uint8_t* mask, int64_t n,
                                                                    float rate, float keep_scale, uint64_t seed,
                                                                    uint64_t step, bool vector) {
  const int64_t groups = (n + 3) / 4;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t group = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; group < groups; group += stride) {
    const philox::Block block = philox::dropout_block(seed, step, static_cast<uint64_t>(group));
    const int64_t first = group * 4;
    if (vector && first + 4 <= n) {
      const float4 in = *reinterpret_cast<const float4*>(x + first);
      const float values[4] = {in.x, in.y, in.z, in.w};
      float out[4];
      uint32_t mask_bytes = 0;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool keep = philox::keeps(block.word[e], rate);
        out[e] = keep ? values[e] * keep_scale : 0.0f;
        mask_bytes |= static_cast<uint32_t>(keep) << (8 * e);  // little-endian: byte e is element e
      }
      *reinterpret_cast<float4*>(y + first) = make_float4(out[0], out[1], out[2], out[3]);
      *reinterpret_cast<uint32_t*>(mask + first) = mask_bytes;
    } else {
      for (int e = 0; e < 4 && first + e < n; ++e) {
        const bool keep = philox::keeps(block.word[e], rate);
        mask[first + e] = keep ? 1 : 0;
        y[first + e] = keep ? x[first + e] * keep_scale : 0.0f;
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads) dropout_backward_kernel(const float* grad_output, const uint8_t* mask,
                                                                     float* grad_input, int64_t n, float keep_scale,
                                                                     bool vector) {
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  int64_t tail = 0;
  if (vector) {
    for (int64_t i = first; i < n / 4; i += stride) {
      const float4 g = reinterpret_cast<const float4*>(grad_output)[i];
      const uint32_t m = reinterpret_cast<const uint32_t*>(mask)[i];
      // As on the CPU: a dropped element is 0 even where grad_output is NaN.
      float4 out;
      out.x = (m & 0xffu) ? g.x * keep_scale : 0.0f;
      out.y = (m & 0xff00u) ? g.y * keep_scale : 0.0f;
      out.z = (m & 0xff0000u) ? g.z * keep_scale : 0.0f;
      out.w = (m & 0xff000000u) ? g.w * keep_scale : 0.0f;
      reinterpret_cast<float4*>(grad_input)[i] = out;
    }
    tail = n / 4 * 4;
  }
  for (int64_t i = tail + first; i < n; i += stride) grad_input[i] = mask[i] ? grad_output[i] * keep_scale : 0.0f;
}

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed, uint64_t step,
                     std::uintptr_t stream) {
  if (n == 0) return;
  const float keep_scale = 1.0f / (1.0f - rate);
  const bool vector = aligned16(x) && aligned16(y) && reinterpret_cast<std::uintptr_t>(mask) % 4 == 0;
  launch("dropout_forward_kernel", dropout_forward_kernel, dim3(grid_for((n + 3) / 4, kThreads)), dim3(kThreads), 0,
         stream, x, y, mask, n, rate, keep_scale, seed, step, vector);
}

void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n, float rate,
                      std::uintptr_t stream) {
  if (n == 0) return;
  const float keep_scale = 1.0f / (1.0f - rate);
  const bool vector = aligned16(grad_output) && aligned16(grad_input) && reinterpret_cast<std::uintptr_t>(mask) % 4 == 0;
  launch("dropout_backward_kernel", dropout_backward_kernel, dim3(grid_for(n, kThreads)), dim3(kThreads), 0, stream,
         grad_output, mask, grad_input, n, keep_scale, vector);
}

}  // namespace fusedtrain::cuda
