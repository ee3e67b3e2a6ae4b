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

// Ten rounds of the Philox 4x32 bijection of `counter` under `key`.
FT_HD Block generate(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint64_t product0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    uint64_t product1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    uint32_t hi0 = static_cast<uint32_t>(product0 >> 32), lo0 = static_cast<uint32_t>(product0);
    uint32_t hi1 = static_cast<uint32_t>(product1 >> 32), lo1 = static_cast<uint32_t>(product1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;  // the key schedule's Weyl constants
    k1 += 0xBB67AE85u;
  }
  return Block{{c0, c1, c2, c3}};
}

// The block that holds the random words of elements 4 * group .. 4 * group + 3 of dropout
// call `step` under `seed`: counter = (group, step), key = seed.
FT_HD Block dropout_block(uint64_t seed, uint64_t step, uint64_t group) {
  return generate(static_cast<uint32_t>(group), static_cast<uint32_t>(group >> 32),
                  static_cast<uint32_t>(step), static_cast<uint32_t>(step >> 32),
                  static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A uniform float in [0, 1) from the top 24 bits of a random word.
FT_HD float to_uniform(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

}  // namespace fusedtrain::philox
