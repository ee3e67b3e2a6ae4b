// Turning CUDA errors into C++ exceptions that name the error and the call that failed.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fusedtrain::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorName(status) + " (" +
                             cudaGetErrorString(status) + ")");
  }
}

// After a kernel launch: a launch error (bad configuration, no device) is reported now.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace fusedtrain::cuda
