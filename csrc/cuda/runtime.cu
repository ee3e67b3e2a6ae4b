// Device discovery through the static CUDA runtime, and the multiprocessor count that sizes the
// grids of the reductions.
#include <cuda_runtime.h>

#include <atomic>

#include "cuda/check.cuh"
#include "cuda/device.cuh"
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

int multiprocessor_count() {
  // Asked once per device: the attribute query is cheap but not free, and kernels launch often.
  constexpr int kDevices = 64;
  static std::atomic<int> counts[kDevices] = {};
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  const bool cached = device >= 0 && device < kDevices;
  int count = cached ? counts[device].load(std::memory_order_relaxed) : 0;
  if (count == 0) {
    check(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
    if (cached) counts[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

}  // namespace fusedtrain::cuda
