// The scratch memory of the GPU reductions (losses, sums of squares, accuracy, bias gradients):
// one small device buffer per call, allocated by the caller (CuPy's pool) and laid out as below.
// Reductions are deterministic: each block writes one partial sum, and finish_sum adds the
// partials in a fixed order, so the same input gives the same bits on every run.
#pragma once
#include <cstdint>

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

// *result = scale * workspace->result (or scale * workspace->count with `count`), on the
// device: the value of a reduction handed to the caller without a read-back.
void store_result(const Workspace* workspace, double* result, bool count, double scale, std::uintptr_t stream);

// Copies workspace->result to the host (waits for the stream).
double read_result(const Workspace* workspace, std::uintptr_t stream);

}  // namespace fusedtrain::cuda
