// Dropout from the Philox stream of common/philox.h: one Philox block gives the random words of
// four consecutive elements. The generator runs on kLanes blocks at once, one round across all
// of them before the next, so that the compiler turns the rounds into vector code (the lanes
// are independent); the words are exactly those of philox::dropout_block.
#include <cstdint>

#include "common/philox.h"
#include "cpu/isa.h"
#include "cpu/parallel.h"

namespace fusedtrain::cpu::FT_ISA {

namespace {

constexpr int64_t kDropoutChunk = 1 << 14;
constexpr int kLanes = 64;
constexpr int64_t kBatch = 4 * kLanes;  // elements covered by one batch of blocks

// stream[4 * lane + w] = word w of philox::dropout_block(seed, step, first_group + lane): the
// random words of the kBatch elements that start at element 4 * first_group, in element order.
inline void dropout_stream(uint64_t seed, uint64_t step, uint64_t first_group, uint32_t* stream) {
  uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
  for (int lane = 0; lane < kLanes; ++lane) {
    uint64_t group = first_group + static_cast<uint64_t>(lane);
    c0[lane] = static_cast<uint32_t>(group);
    c1[lane] = static_cast<uint32_t>(group >> 32);
    c2[lane] = static_cast<uint32_t>(step);
    c3[lane] = static_cast<uint32_t>(step >> 32);
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < philox::kRounds; ++r) {
    for (int lane = 0; lane < kLanes; ++lane) {
      philox::apply_round(c0[lane], c1[lane], c2[lane], c3[lane], k0, k1);
    }
    philox::bump_key(k0, k1);
  }
  for (int lane = 0; lane < kLanes; ++lane) {
    stream[4 * lane + 0] = c0[lane];
    stream[4 * lane + 1] = c1[lane];
    stream[4 * lane + 2] = c2[lane];
    stream[4 * lane + 3] = c3[lane];
  }
}

// Keeps or zeroes `count` elements with their random words. y may be x itself (in place), so
// only the stream and the mask are declared restrict.
inline void apply_stream(const uint32_t* __restrict stream, const float* x, float* y, uint8_t* __restrict mask,
                         int64_t count, float rate, float keep_scale) {
  for (int64_t e = 0; e < count; ++e) {
    bool keep = philox::keeps(stream[e], rate);
    mask[e] = keep ? 1 : 0;
    y[e] = keep ? x[e] * keep_scale : 0.0f;
  }
}

}  // namespace

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step) {
  const float keep_scale = 1.0f / (1.0f - rate);
  // Chunks start at multiples of kBatch, so every chunk starts on a group boundary.
  parallel_for(n, kDropoutChunk, [=](int64_t begin, int64_t end) {
    alignas(32) uint32_t stream[kBatch];
    for (int64_t i = begin; i < end; i += kBatch) {
      dropout_stream(seed, step, static_cast<uint64_t>(i / 4), stream);
      apply_stream(stream, x + i, y + i, mask + i, end - i < kBatch ? end - i : kBatch, rate, keep_scale);
    }
  }, kBatch);
}

void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n,
                      float rate) {
  const float keep_scale = 1.0f / (1.0f - rate);
  parallel_for(n, kDropoutChunk, [=](int64_t begin, int64_t end) {
    const float scale = keep_scale;
    for (int64_t i = begin; i < end; ++i) {
      // Read unconditionally and select: a dropped element is 0 even where grad_output is NaN,
      // and the loop vectorizes without masked loads.
      float value = grad_output[i] * scale;
      grad_input[i] = mask[i] ? value : 0.0f;
    }
  });
}

}  // namespace fusedtrain::cpu::FT_ISA
