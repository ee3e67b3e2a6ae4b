// OpenMP helpers for the CPU kernels: split a range into one contiguous chunk per thread,
// and only when the range is large enough to pay for waking the threads.
#pragma once
#include <omp.h>

#include <cstdint>

#include "cpu/isa.h"

namespace fusedtrain::cpu {
// The process-wide thread count of fusedtrain::cpu::set_num_threads (defined in dispatch.cpp).
int kernel_threads();
}  // namespace fusedtrain::cpu

namespace fusedtrain::cpu::FT_ISA {

// Number of threads worth using for `work` units when one thread should get at least
// `min_work_per_thread` of them.
static inline int threads_for(int64_t work, int64_t min_work_per_thread) {
  int64_t useful = work / (min_work_per_thread > 0 ? min_work_per_thread : 1);
  int64_t available = kernel_threads();
  if (useful < 1) useful = 1;
  return static_cast<int>(useful < available ? useful : available);
}

// The chunk of [0, n) that thread `index` of `count` takes; boundaries are multiples of `align`
// (except the end), which keeps SIMD loops whole.
static inline void chunk_bounds(int64_t n, int64_t index, int64_t count, int64_t align,
                                int64_t* begin, int64_t* end) {
  *begin = (n * index / count) / align * align;
  *end = index + 1 == count ? n : (n * (index + 1) / count) / align * align;
}

// Calls body(begin, end) on disjoint chunks covering [0, n), in parallel when n is large.
template <class Body>
static inline void parallel_for(int64_t n, int64_t min_chunk, Body&& body, int64_t align = 16) {
  int threads = threads_for(n, min_chunk);
  if (threads <= 1) {
    body(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    int64_t begin, end;
    chunk_bounds(n, omp_get_thread_num(), omp_get_num_threads(), align, &begin, &end);
    if (begin < end) body(begin, end);
  }
}

// Sum of body(begin, end) over the chunks of parallel_for, added in chunk order so that the
// result does not depend on thread timing (it does depend on the thread count).
template <class Body>
static inline double parallel_sum(int64_t n, int64_t min_chunk, Body&& body, int64_t align = 16) {
  int threads = threads_for(n, min_chunk);
  if (threads <= 1) return body(int64_t{0}, n);
  double partial[256] = {0.0};
  if (threads > 256) threads = 256;
#pragma omp parallel num_threads(threads)
  {
    int index = omp_get_thread_num();
    int64_t begin, end;
    chunk_bounds(n, index, omp_get_num_threads(), align, &begin, &end);
    partial[index] = begin < end ? body(begin, end) : 0.0;
  }
  double total = 0.0;
  for (int i = 0; i < threads; ++i) total += partial[i];
  return total;
}

}  // namespace fusedtrain::cpu::FT_ISA
