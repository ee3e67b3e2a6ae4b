// The scratch memory of the GPU reductions (losses, sums of squares, accuracy, bias gradients):
// one small device buffer per call, allocated by the caller (CuPy's pool) and laid out as below.
// Reductions are deterministic: each block writes one partial sum, and finish_sum adds the
// partials in a fixed order, so the same input gives the same bits on every run.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/check.cuh"
#include "cuda/runtime.h"

namespace fusedtrain::cuda {

constexpr int kMaxPartials = 1024;  // blocks of a reduction's first pass

struct Workspace {
  double result;                  // the reduced value (finish_sum)
  unsigned long long first_error; // softmax cross-entropy: the first row with a bad label
  unsigned long long count;       // accuracy: rows predicted correctly
  double reserved[5];
  double partials[kMaxPartials];  // one per block (bias_grad stores floats here)
};
static_assert(sizeof(Workspace) == kWorkspaceBytes, "runtime.h's kWorkspaceBytes is the size of Workspace");

inline Workspace* as_workspace(void* workspace) { return static_cast<Workspace*>(workspace); }

// workspace->result = scale * (sum of partials[0 .. blocks)), plus the previous result when
// `accumulate`. One block; the partials are added in a fixed order.
void finish_sum(Workspace* workspace, int blocks, double scale, bool accumulate, std::uintptr_t stream);

// *result = workspace->result / divisor (workspace->count / divisor with `count`), on the
// device: the value of a reduction handed to the caller without a read-back (divided as the
// host divides a value it read back, so both give the same bits).
void store_result(const Workspace* workspace, double* result, bool count, double divisor, std::uintptr_t stream);

// Copies workspace->result to the host (waits for the stream).
double read_result(const Workspace* workspace, std::uintptr_t stream);

// After a kernel that recorded the first row with a label outside [0, classes) in
// workspace->first_error (reset to ~0 before it): waits for the stream and throws
// std::invalid_argument naming that label, as the CPU kernels do.
template <class Label>
void check_labels(const Workspace* workspace, const Label* labels, int64_t classes, const char* kernel,
                  std::uintptr_t stream) {
  const cudaStream_t cuda_stream = reinterpret_cast<cudaStream_t>(stream);
  unsigned long long first_error = 0;
  check(cudaMemcpyAsync(&first_error, &workspace->first_error, sizeof(first_error), cudaMemcpyDeviceToHost,
                        cuda_stream),
        "cudaMemcpyAsync(first_error)");
  check(cudaStreamSynchronize(cuda_stream), "cudaStreamSynchronize");
  if (first_error == ~0ull) return;
  Label label = 0;
  check(cudaMemcpyAsync(&label, labels + first_error, sizeof(label), cudaMemcpyDeviceToHost, cuda_stream),
        "cudaMemcpyAsync(label)");
  check(cudaStreamSynchronize(cuda_stream), "cudaStreamSynchronize");
  throw std::invalid_argument(std::string("fusedtrain::cuda::") + kernel + ": labels[" + std::to_string(first_error) +
                              "] = " + std::to_string(label) + " is outside [0, " + std::to_string(classes) + ")");
}

}  // namespace fusedtrain::cuda
