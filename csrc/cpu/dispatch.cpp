// The public CPU entry points (fusedtrain/cpu.h): check what the kernels cannot, then call the
// AVX2/FMA build of the kernel when the CPU and OS support it, else the portable build.
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/simd.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::cpu {

namespace generic {
#include "fusedtrain/cpu_kernels.inc"
}
#if FT_HAVE_AVX2
namespace avx2 {
#include "fusedtrain/cpu_kernels.inc"
}
#endif

namespace {

bool cpu_has_avx2_fma() {
#if FT_HAVE_AVX2
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// FUSEDTRAIN_SIMD=portable forces the portable kernels (for tests and comparisons).
bool initial_use_avx2() {
  const char* forced = std::getenv("FUSEDTRAIN_SIMD");
  if (forced && std::strcmp(forced, "portable") == 0) return false;
  return cpu_has_avx2_fma();
}

std::atomic<bool>& use_avx2() {
  static std::atomic<bool> flag{initial_use_avx2()};
  return flag;
}

}  // namespace

#if FT_HAVE_AVX2
#define FT_DISPATCH(name, ...) \
  (use_avx2().load(std::memory_order_relaxed) ? avx2::name(__VA_ARGS__) : generic::name(__VA_ARGS__))
#else
#define FT_DISPATCH(name, ...) generic::name(__VA_ARGS__)
#endif

const char* simd_path() { return use_avx2().load() ? "avx2+fma" : "portable"; }

bool simd_available(const std::string& path) {
  if (path == "portable") return true;
  if (path == "avx2+fma") return cpu_has_avx2_fma();
  return false;
}

void set_simd_path(const std::string& path) {
  if (!simd_available(path)) {
    throw std::invalid_argument("SIMD path '" + path + "' is not available on this CPU/build");
  }
  use_avx2().store(path == "avx2+fma");
}

int get_num_threads() { return omp_get_max_threads(); }

void set_num_threads(int threads) {
  if (threads < 1) throw std::invalid_argument("threads must be >= 1, got " + std::to_string(threads));
  omp_set_num_threads(threads);
}

template <class Label>
static void check_labels(const Label* labels, int64_t rows, int64_t classes) {
  for (int64_t i = 0; i < rows; ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw std::invalid_argument("labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) +
                                  " is outside [0, " + std::to_string(classes) + ")");
    }
  }
}

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
          const float* bias, Activation activation, float activation_param) {
  FT_DISPATCH(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, activation,
              activation_param);
}

void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n) {
  FT_DISPATCH(activation_forward, activation, param, x, y, n);
}

void activation_backward(Activation activation, float param, const float* grad_output,
                         const float* x, float* grad_input, int64_t n) {
  FT_DISPATCH(activation_backward, activation, param, grad_output, x, grad_input, n);
}

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  FT_DISPATCH(softmax_forward, x, y, rows, cols);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows,
                      int64_t cols) {
  FT_DISPATCH(softmax_backward, grad_output, x, grad_input, rows, cols);
}

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, Reduction reduction) {
  return FT_DISPATCH(mse_loss, pred, target, grad, n, reduction);
}

double binary_cross_entropy_loss(const float* logits, const float* target, float* grad, int64_t n,
                                 Reduction reduction) {
  return FT_DISPATCH(binary_cross_entropy_loss, logits, target, grad, n, reduction);
}

double softmax_cross_entropy_loss(const float* logits, const int32_t* labels, float* grad,
                                  int64_t rows, int64_t classes, Reduction reduction) {
  check_labels(labels, rows, classes);
  return FT_DISPATCH(softmax_cross_entropy_loss, logits, labels, grad, rows, classes, reduction);
}

double softmax_cross_entropy_loss(const float* logits, const int64_t* labels, float* grad,
                                  int64_t rows, int64_t classes, Reduction reduction) {
  check_labels(labels, rows, classes);
  return FT_DISPATCH(softmax_cross_entropy_loss, logits, labels, grad, rows, classes, reduction);
}

void bias_grad(const float* grad_output, float* grad_bias, int64_t rows, int64_t cols) {
  FT_DISPATCH(bias_grad, grad_output, grad_bias, rows, cols);
}

void argmax_rows(const float* x, int64_t* indices, int64_t rows, int64_t cols) {
  FT_DISPATCH(argmax_rows, x, indices, rows, cols);
}

int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols) {
  return FT_DISPATCH(count_correct, scores, labels, rows, cols);
}

int64_t count_correct(const float* scores, const int64_t* labels, int64_t rows, int64_t cols) {
  return FT_DISPATCH(count_correct, scores, labels, rows, cols);
}

double sum_of_squares(const float* x, int64_t n) { return FT_DISPATCH(sum_of_squares, x, n); }

void scale(float* x, int64_t n, float factor) { FT_DISPATCH(scale, x, n, factor); }

void sgd_step(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum,
              bool nesterov, float weight_decay) {
  FT_DISPATCH(sgd_step, param, grad, velocity, n, lr, momentum, nesterov, weight_decay);
}

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled) {
  if (step < 1) throw std::invalid_argument("step counts from 1, got " + std::to_string(step));
  FT_DISPATCH(adam_step, param, grad, m, v, n, step, lr, beta1, beta2, eps, weight_decay, decoupled);
}

void rmsprop_step(float* param, const float* grad, float* square_avg, int64_t n, float lr, float alpha,
                  float eps, float weight_decay) {
  FT_DISPATCH(rmsprop_step, param, grad, square_avg, n, lr, alpha, eps, weight_decay);
}

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step) {
  FT_DISPATCH(dropout_forward, x, y, mask, n, rate, seed, step);
}

void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n,
                      float rate) {
  FT_DISPATCH(dropout_backward, grad_output, mask, grad_input, n, rate);
}

}  // namespace fusedtrain::cpu
