// Softmax rows in blocks, shared by softmax and its gradient (activations.cpp) and softmax
// cross-entropy (losses.cpp): whole rows of about kSoftmaxBlockElements elements (8 KiB, which
// stays in L1 between a block's passes), and the pass that takes a block's exponentials.
#pragma once
#include <cstdint>

#include "common/fast_math.h"
#include "cpu/isa.h"

namespace fusedtrain::cpu::FT_ISA {

constexpr int64_t kSoftmaxBlockElements = 2048;

// Rows [begin, end) split into blocks: body(first_row, rows, next_rows), next_rows being the
// rows of the block that follows in the range (0 for the last).
template <class Body>
inline void for_each_block(int64_t begin, int64_t end, int64_t cols, Body&& body) {
  const int64_t block_rows = kSoftmaxBlockElements / cols > 1 ? kSoftmaxBlockElements / cols : 1;
  for (int64_t first = begin; first < end; first += block_rows) {
    const int64_t rows = end - first < block_rows ? end - first : block_rows;
    const int64_t after = end - first - rows;
    body(first, rows, after < block_rows ? after : block_rows);
  }
}

// y = exp(y) over the n elements of a block, in one pass across its rows (a row of 10 classes
// alone would mostly fall in the loop's scalar remainder). Meanwhile the next block's input
// (next_n elements at next) is requested a cache line at a time, so that its loads overlap these
// exponentials instead of following them: softmax of 4096 x 1000 runs ~10% faster.
inline void exp_block(float* y, int64_t n, const float* next, int64_t next_n) {
  constexpr int64_t kLine = 64 / sizeof(float);
  int64_t i = 0;
  for (; i + kLine <= n; i += kLine) {
    if (i < next_n) __builtin_prefetch(next + i);
    for (int64_t j = i; j < i + kLine; ++j) y[j] = math::exp(y[j]);
  }
  for (; i < n; ++i) y[i] = math::exp(y[i]);
}

}  // namespace fusedtrain::cpu::FT_ISA
