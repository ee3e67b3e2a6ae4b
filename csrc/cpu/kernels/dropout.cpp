// Dropout from the Philox stream of common/philox.h: one Philox block gives the random words of
// four consecutive elements, so each group of four costs one generator call.
#include <cstdint>

#include "common/philox.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {
constexpr int64_t kDropoutChunk = 1 << 14;
}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step) {
  const float keep_scale = 1.0f / (1.0f - rate);
  // Chunks start at multiples of 16, so every chunk starts on a group boundary.
  parallel_for(n, kDropoutChunk, [&](int64_t begin, int64_t end) {
    for (int64_t group = begin / 4; group * 4 < end; ++group) {
      philox::Block block = philox::dropout_block(seed, step, static_cast<uint64_t>(group));
      for (int lane = 0; lane < 4; ++lane) {
        int64_t i = group * 4 + lane;
        if (i >= end) break;
        bool keep = philox::to_uniform(block.word[lane]) >= rate;
        mask[i] = keep ? 1 : 0;
        y[i] = keep ? x[i] * keep_scale : 0.0f;
      }
    }
  });
}

void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n, float rate) {
  const float keep_scale = 1.0f / (1.0f - rate);
  parallel_for(n, kDropoutChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) grad_input[i] = mask[i] ? grad_output[i] * keep_scale : 0.0f;
  });
}

}  // namespace fusedtrain::cpu::FT_ISA
