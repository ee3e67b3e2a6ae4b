// The CUDA side as seen from C++ (no CUDA headers here, so the bindings compile with or without
// nvcc): device discovery and the kernels' host entry points, all on raw device pointers.
#pragma once
#include <cstdint>
#include <string>

#include "fusedtrain/types.h"

namespace fusedtrain::cuda {

// What cudaGetDeviceCount says. With no driver or no GPU, device_count is 0 and `error` holds
// the CUDA error's name and description; importing never needs either.
struct DeviceReport {
  int device_count = 0;
  std::string error;
  std::string driver;  // driver version, "major.minor"
};
DeviceReport query_devices();

// Name, compute capability and memory of one device, as "NAME (sm_XY, N MiB)".
std::string describe_device(int device);

// Activation kernels on `stream` (a cudaStream_t as an integer; 0 is the default stream).
// Errors become std::runtime_error carrying the CUDA error's name.
void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n,
                        std::uintptr_t stream);
void activation_backward(Activation activation, float param, const float* grad_output,
                         const float* x, float* grad_input, int64_t n, std::uintptr_t stream);

}  // namespace fusedtrain::cuda
