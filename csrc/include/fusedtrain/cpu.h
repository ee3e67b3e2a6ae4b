// fusedtrain's CPU kernels as a C++ API: plain pointers and sizes, no Python types.
// Each call picks the AVX2/FMA or the portable implementation at run time and runs on the
// OpenMP thread pool.
#pragma once
#include <cstdint>

#include "fusedtrain/types.h"

namespace fusedtrain::cpu {

#include "fusedtrain/cpu_kernels.inc"

// The instruction-set path the kernels use on this machine: "avx2+fma" or "portable".
const char* simd_path();
int get_num_threads();
void set_num_threads(int threads);

}  // namespace fusedtrain::cpu
