// The CUDA side as seen from C++ (no CUDA headers here, so the bindings compile with or without
// nvcc): device discovery and the kernels' host entry points, all on raw device pointers.
//
// Every entry point launches on `stream` (a cudaStream_t as an integer; 0 is the default
// stream) and returns without waiting, except those that return a value computed on the GPU
// (the losses and count_correct without a `result` pointer, read_result), which wait for it. Arguments are trusted:
// fusedtrain.ops validates shapes, dtypes and devices first, and the bindings hold every size
// to the limits below. CUDA errors become std::runtime_error carrying the CUDA error's name; a
// bad label std::invalid_argument.
// Semantics are those of the CPU kernels of fusedtrain/cpu_kernels.inc, including which
// outputs may alias which inputs.
#pragma once
#include <cstdint>
#include <string>

#include "fusedtrain/types.h"

namespace fusedtrain::cuda {

// ---- size limits ----------------------------------------------------------------------------
// Every kernel indexes with int64_t and covers its elements with a grid-stride loop over a grid
// of at most 2^20 blocks (int64_t strides), so an array is limited by int64_t alone:
// kMaxElements leaves room for the last stride step past the end. Two launches tie gridDim.x
// (at most 2^31 - 1 blocks) to a size: the GEMM runs one block per kGemmTile x kGemmTile tile
// of C, bias_grad one per kBiasGradColumns columns (its row chunks along gridDim.y are capped
// at 65535 inside). The bindings refuse sizes beyond these limits before anything launches.
constexpr int64_t kMaxElements = int64_t{1} << 62;
constexpr int64_t kMaxGridBlocks = 2147483647;
constexpr int64_t kGemmTile = 128;
constexpr int64_t kBiasGradColumns = 32;

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

// Bytes of the device scratch buffer that the reductions below take as `workspace` (16-byte
// aligned; its contents need no initialization). One buffer may serve consecutive calls on one
// stream, never two calls in flight on different streams.
constexpr int64_t kWorkspaceBytes = 8256;

// ---- matrix multiply -------------------------------------------------------------------------
// C = activation(alpha * op(A) @ op(B) + beta * C + bias) as the CPU's gemm; with allow_tf32 the
// products run on tensor cores with A and B rounded to TF32 (10-bit mantissa), accumulated in
// float32.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
          const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias, Activation activation,
          float activation_param, bool allow_tf32, std::uintptr_t stream);

// ---- activations -----------------------------------------------------------------------------
void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n,
                        std::uintptr_t stream);
void activation_backward(Activation activation, float param, const float* grad_output,
                         const float* x, float* grad_input, int64_t n, std::uintptr_t stream);
void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols, std::uintptr_t stream);
void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows, int64_t cols,
                      std::uintptr_t stream);

// ---- losses: the value and the gradient (grad may be null) --------------------------------------
// With `result` null the value is returned (the stream is waited for). With a device double
// `result` the value is stored there on the device and the call returns 0 without waiting: a
// training step reads nothing back.
double mse_loss(const float* pred, const float* target, float* grad, int64_t n, Reduction reduction,
                void* workspace, double* result, std::uintptr_t stream);
double binary_cross_entropy_loss(const float* logits, const float* target, float* grad, int64_t n,
                                 Reduction reduction, void* workspace, double* result, std::uintptr_t stream);
// Labels are checked on the device: the first one outside [0, classes) raises
// std::invalid_argument after the kernel (grad then holds the softmax of the rows, unspecified
// at the bad rows). With `result` the call does not wait, so nothing is raised: a bad label's
// row then adds nothing to the loss (the training loop checks labels on the host first).
double softmax_cross_entropy_loss(const float* logits, const int32_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction, void* workspace, double* result,
                                  std::uintptr_t stream);
double softmax_cross_entropy_loss(const float* logits, const int64_t* labels, float* grad, int64_t rows,
                                  int64_t classes, Reduction reduction, void* workspace, double* result,
                                  std::uintptr_t stream);

// ---- reductions ------------------------------------------------------------------------------
void bias_grad(const float* grad_output, float* grad_bias, int64_t rows, int64_t cols, void* workspace,
               std::uintptr_t stream);
void argmax_rows(const float* x, int64_t* indices, int64_t rows, int64_t cols, std::uintptr_t stream);
// Rows whose argmax is their label. Labels are checked on the device as by softmax cross-entropy
// (std::invalid_argument for the first one outside [0, cols)). With a device double `result`,
// the share of such rows (count / rows) is stored there instead and the call returns 0 without
// waiting (a bad label is then not reported, and its row not counted).
int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols, void* workspace,
                      double* result, std::uintptr_t stream);
int64_t count_correct(const float* scores, const int64_t* labels, int64_t rows, int64_t cols, void* workspace,
                      double* result, std::uintptr_t stream);
// The workspace's result becomes sum(x^2) (in double), or grows by it with `accumulate`; the
// value stays on the device (read_result fetches it).
void sum_of_squares(const float* x, int64_t n, bool accumulate, void* workspace, std::uintptr_t stream);
// Global-norm clipping after sum_of_squares over every gradient: with norm = sqrt(the
// workspace's result), x *= max_norm / (norm + 1e-6) when norm is finite and above max_norm.
void clip_scale(float* x, int64_t n, double max_norm, const void* workspace, std::uintptr_t stream);
// The workspace's result, copied to the host (waits for the stream).
double read_result(void* workspace, std::uintptr_t stream);

// ---- optimizers: one fused, in-place launch over a flat parameter buffer ---------------------
void sgd_step(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum, bool nesterov,
              float weight_decay, std::uintptr_t stream);
void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float lr, float beta1,
               float beta2, float eps, float weight_decay, bool decoupled, std::uintptr_t stream);
void rmsprop_step(float* param, const float* grad, float* square_avg, int64_t n, float lr, float alpha, float eps,
                  float weight_decay, std::uintptr_t stream);

// ---- dropout ---------------------------------------------------------------------------------
// The same mask as the CPU's dropout_forward for the same (seed, step).
void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed, uint64_t step,
                     std::uintptr_t stream);
void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n, float rate,
                      std::uintptr_t stream);

}  // namespace fusedtrain::cuda
