// Machine probes for the benchmarks: the multiply-add peak and the memory bandwidth that the
// kernels' figures are compared with. Written like the kernels (same flags, same threads).
#include <omp.h>

#include <cstdint>

#include "cpu/isa.h"
#include "cpu/parallel.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define FT_PROBE_WIDTH 16
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FT_PROBE_WIDTH 8
#else
#define FT_PROBE_WIDTH 1
#endif

namespace fusedtrain::cpu::FT_ISA {

namespace {

// Independent accumulators: enough chains to cover the multiply-add latency on both FMA pipes
// (latency 4-5 cycles x 2 pipes), so the loop runs at the pipes' throughput.
constexpr int kChains = 10;
// The probe's result goes here, so that the compiler cannot drop the loop as unused.
volatile float sink;

// The widest multiply-add this build has: 512-bit in the AVX-512 build, whose peak is what the
// AVX-512 kernels are measured against (twice the 256-bit one where the FMA units are 512 bits
// wide, the same where they execute a 512-bit operation in two halves).
#if FT_PROBE_WIDTH == 16
double fma_rounds(int64_t rounds) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 scale = _mm512_set1_ps(0.999999f), shift = _mm512_set1_ps(1e-7f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], scale, shift);
  }
  __m512 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm512_add_ps(total, acc[i]);
  sink = _mm512_reduce_add_ps(total);
  return 2.0 * 16.0 * kChains * static_cast<double>(rounds);
}
#elif FT_PROBE_WIDTH == 8
double fma_rounds(int64_t rounds) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-7f);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], scale, shift);
  }
  __m256 total = acc[0];
  for (int i = 1; i < kChains; ++i) total = _mm256_add_ps(total, acc[i]);
  sink = _mm256_cvtss_f32(total);
  return 2.0 * 8.0 * kChains * static_cast<double>(rounds);
}
#else
double fma_rounds(int64_t rounds) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
  for (int64_t r = 0; r < rounds; ++r) {
    for (int i = 0; i < kChains; ++i) acc[i] = acc[i] * 0.999999f + 1e-7f;
  }
  float total = 0.0f;
  for (int i = 0; i < kChains; ++i) total += acc[i];
  sink = total;
  return 2.0 * kChains * static_cast<double>(rounds);
}
#endif

}  // namespace

double fma_probe(int64_t rounds) {
  double flops = 0.0;
#pragma omp parallel num_threads(kernel_threads()) reduction(+ : flops)
  flops += fma_rounds(rounds);
  return flops;
}

void triad_probe(float* a, const float* b, const float* c, float scalar, int64_t n) {
  // On the threads set, whatever the kernels' RegionWatch last saw (parallel_for would not).
#pragma omp parallel num_threads(threads_for(n, int64_t{1} << 16))
  {
    int64_t begin, end;
    chunk_bounds(n, omp_get_thread_num(), omp_get_num_threads(), 16, &begin, &end);
    for (int64_t i = begin; i < end; ++i) a[i] = b[i] + scalar * c[i];
  }
}

}  // namespace fusedtrain::cpu::FT_ISA
