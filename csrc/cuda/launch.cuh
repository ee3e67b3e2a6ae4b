// Kernel launches: every launch goes through launch(), which runs the kernel on the given stream
// and turns a launch error into an exception that names the kernel and the CUDA error.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"

namespace fusedtrain::cuda {

inline cudaStream_t as_stream(std::uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

// Launches `kernel` on `stream` and turns a launch error into an exception naming the kernel.
// The arguments are converted to the kernel's parameter types here, once.
template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            std::uintptr_t stream, Args... args) {
  kernel<<<grid, block, shared_bytes, as_stream(stream)>>>(static_cast<Params>(args)...);
  check_launch(name);
}

}  // namespace fusedtrain::cuda
