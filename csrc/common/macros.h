// Portability macros for the per-element math that both g++ (CPU) and nvcc (CUDA) compile.
#pragma once

// Functions in csrc/common/ are forced inline (and free functions have internal linkage), so
// that the AVX2 build of a helper is never called from the portable build of the CPU kernels:
// see csrc/cpu/isa.h. Inside a struct, FT_HD declares a static member function.
#if defined(__CUDACC__)
#define FT_HD static __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define FT_HD static __forceinline
#else
#define FT_HD static inline __attribute__((always_inline))
#endif
