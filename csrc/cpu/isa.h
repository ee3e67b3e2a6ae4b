// Included by every file in csrc/cpu/kernels/, which CMake compiles once per instruction set:
// FT_ISA is `generic` (the baseline of the target), `avx2` (-mavx2 -mfma) or `avx512` (AVX2 and
// FMA plus AVX-512 F, BW, VL and DQ). The kernels are defined in namespace
// fusedtrain::cpu::FT_ISA and csrc/cpu/dispatch.cpp chooses one set at run time. To keep a
// wider build from leaking into a narrower one through the linker's
// merging of inline functions, kernel files use no out-of-line standard-library templates
// (no std::vector, std::function, ...): raw pointers, and helpers that are static, forced
// inline (csrc/common/) or live in the per-ISA namespace.
#pragma once
#include <cstdint>

#include "fusedtrain/types.h"

#ifndef FT_ISA
#error "csrc/cpu/kernels/ files are compiled with -DFT_ISA=generic, avx2 or avx512"
#endif

namespace fusedtrain::cpu::FT_ISA {
#include "fusedtrain/cpu_kernels.inc"
}  // namespace fusedtrain::cpu::FT_ISA
