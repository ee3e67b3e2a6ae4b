// Device discovery through the static CUDA runtime.
#include <cuda_runtime.h>

#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

DeviceReport query_devices() {
  DeviceReport report;
  int driver_version = 0;
  if (cudaDriverGetVersion(&driver_version) == cudaSuccess && driver_version > 0) {
    report.driver = std::to_string(driver_version / 1000) + "." + std::to_string(driver_version % 1000 / 10);
  }
  cudaError_t status = cudaGetDeviceCount(&report.device_count);
  if (status != cudaSuccess) {
    report.device_count = 0;
    report.error = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
  }
  return report;
}

std::string describe_device(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
}

}  // namespace fusedtrain::cuda
