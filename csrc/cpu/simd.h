// Choosing the CPU kernels' instruction-set path at run time (internal; see dispatch.cpp).
#pragma once
#include <string>

namespace fusedtrain::cpu {

// Whether `path` ("avx512", "avx2+fma" or "portable") can run on this CPU with this build.
bool simd_available(const std::string& path);
// Switch every kernel to `path`; throws std::invalid_argument where it is not available.
void set_simd_path(const std::string& path);

}  // namespace fusedtrain::cpu
