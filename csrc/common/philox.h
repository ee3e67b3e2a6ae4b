// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, so element i's random number depends only on (seed, step, i) and
// the CPU and the GPU draw the same dropout mask whatever their thread layout.
#pragma once
#include <cstdint>

#include "common/macros.h"

namespace fusedtrain::philox {

struct Block {
  uint32_t word[4];
};

constexpr int kRounds = 10;

// One round of the bijection: two 32x32 -> 64-bit products whose high halves are mixed with the
// other two words and the round key.
FT_HD void apply_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
  uint64_t product0 = static_cast<uint64_t>(0xD2511F53u) * c0;
  uint64_t product1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
  c0 = static_cast<uint32_t>(product1 >> 32) ^ c1 ^ k0;
  c1 = static_cast<uint32_t>(product1);
  c2 = static_cast<uint32_t>(product0 >> 32) ^ c3 ^ k1;
  c3 = static_cast<uint32_t>(product0);
}

// The key schedule between rounds: Weyl sequences (golden ratio and sqrt(3) - 1 in 32 bits).
FT_HD void bump_key(uint32_t& k0, uint32_t& k1) {
  k0 += 0x9E3779B9u;
  k1 += 0xBB67AE85u;
}

// Ten rounds of the Philox 4x32 bijection of `counter` under `key`.
FT_HD Block generate(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int r = 0; r < kRounds; ++r) {
    apply_round(c0, c1, c2, c3, k0, k1);
    bump_key(k0, k1);
  }
  return Block{{c0, c1, c2, c3}};
}

// The block that holds the random words of elements 4 * group .. 4 * group + 3 of dropout
// call `step` under `seed`: counter = (group, step), key = seed, 64-bit values as (low, high).
FT_HD Block dropout_block(uint64_t seed, uint64_t step, uint64_t group) {
  return generate(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32),
                  static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32),
                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A uniform float in [0, 1) from the top 24 bits of a random word (exact in float).
FT_HD float to_uniform(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

// Dropout keeps an element when its uniform reaches the rate: probability 1 - rate.
FT_HD bool keeps(uint32_t word, float rate) { return to_uniform(word) >= rate; }

}  // namespace fusedtrain::philox
