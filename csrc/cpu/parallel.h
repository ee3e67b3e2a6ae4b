// OpenMP helpers for the CPU kernels: split a range into one contiguous chunk per thread,
// and only when the range is large enough to pay for waking the threads.
#pragma once
#include <omp.h>

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace fusedtrain::cpu::FT_ISA {

// Watches one parallel region. Another library's threads that spin while they wait for work
// (OpenBLAS's do for about 0.1 s after each NumPy matmul, and never yield) leave fewer free
// cores than threads: a woken thread of ours then waits for a core, up to a scheduler time
// slice, and the region waits for it (2 cores: a 256-square matmul on 2 threads took 1.1 ms
// right after a NumPy matmul instead of 0.31 alone and 0.6 on 1 thread, its two halves running
// one after the other; relu on 1M floats 650 us instead of 55 and 120). A region is late when
// its threads sat idle for more than half of (threads x its time), and for over 200 us in all,
// more than waking a sleeping thread costs; after two late regions in a row the regions run on
// one thread for the next 20 ms (the same chunks, one after the other), then on all again. (Per instruction set, like
// everything here, and without std::atomic's inline templates: see cpu/isa.h.)
class RegionWatch {
 public:
  explicit RegionWatch(int threads) : threads_(threads), start_(steady_ns()) {}
  RegionWatch(const RegionWatch&) = delete;
  RegionWatch& operator=(const RegionWatch&) = delete;
  // A thread's share, timed.
  template <class Body>
  void run(Body&& body) {
    const int64_t begin = steady_ns();
    body();
    __atomic_fetch_add(&busy_, steady_ns() - begin, __ATOMIC_RELAXED);
  }
  ~RegionWatch() {
    const int64_t capacity = threads_ * (steady_ns() - start_), idle = capacity - busy_;
    note_region(idle > kIdleNs && 2 * idle > capacity);
  }

 private:
  static constexpr int64_t kIdleNs = 200000;
  int64_t threads_;
  int64_t start_;
  int64_t busy_ = 0;
};

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

// Calls body(index, begin, end) on `threads` disjoint chunks covering [0, n), in parallel. Each
// chunk is taken by the first thread free to take it: a thread that starts late (its core held
// by another library's spinning threads) leaves its chunk to another. Which thread runs a chunk
// changes nothing in the results.
template <class Body>
static inline void parallel_chunks(int64_t n, int threads, int64_t align, Body&& body) {
  auto chunk = [&](int index) {
    int64_t begin, end;
    chunk_bounds(n, index, threads, align, &begin, &end);
    body(index, begin, end);
  };
  const int running = running_threads(threads);
  if (running <= 1) {
    for (int index = 0; index < threads; ++index) chunk(index);
    return;
  }
  RegionWatch watch(running);
#pragma omp parallel num_threads(running)
  watch.run([&] {
#pragma omp for schedule(dynamic, 1) nowait
    for (int index = 0; index < threads; ++index) chunk(index);
  });
}

// Calls body(begin, end) on disjoint chunks covering [0, n), in parallel when n is large.
template <class Body>
static inline void parallel_for(int64_t n, int64_t min_chunk, Body&& body, int64_t align = 16) {
  int threads = threads_for(n, min_chunk);
  if (threads <= 1) {
    body(int64_t{0}, n);
    return;
  }
  parallel_chunks(n, threads, align, [&](int, int64_t begin, int64_t end) {
    if (begin < end) body(begin, end);
  });
}

// Sum of body(begin, end) over the chunks of parallel_for, added in chunk order so that the
// result does not depend on thread timing (it does depend on the thread count set).
template <class Body>
static inline double parallel_sum(int64_t n, int64_t min_chunk, Body&& body, int64_t align = 16) {
  int threads = threads_for(n, min_chunk);
  if (threads <= 1) return body(int64_t{0}, n);
  double partial[256] = {0.0};
  if (threads > 256) threads = 256;
  parallel_chunks(n, threads, align, [&](int index, int64_t begin, int64_t end) {
    partial[index] = begin < end ? body(begin, end) : 0.0;
  });
  double total = 0.0;
  for (int i = 0; i < threads; ++i) total += partial[i];
  return total;
}

}  // namespace fusedtrain::cpu::FT_ISA
