// The public CPU entry points (fusedtrain/cpu.h): check what the kernels cannot, then call the
// widest build of the kernel that the CPU and the OS support: AVX-512, AVX2/FMA or portable.
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#if FT_HAVE_AVX2
#include <cpuid.h>
#endif

#include "cpu/simd.h"
#include "cpu/threads.h"
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
#if FT_HAVE_AVX512
namespace avx512 {
#include "fusedtrain/cpu_kernels.inc"
}
#endif

namespace {

// The paths, narrowest first: a request for a path the machine lacks gets the widest below it.
enum class Path { Portable = 0, Avx2 = 1, Avx512 = 2 };
constexpr const char* kPathNames[] = {"portable", "avx2+fma", "avx512"};

#if FT_HAVE_AVX2
// The state components that XCR0 says the OS saves and restores on a context switch: SSE and AVX
// (bits 1-2) for the 256-bit registers; with AVX-512 also the opmask registers, the upper halves
// of zmm0-15 and zmm16-31 (bits 5-7). A CPU can report AVX-512 in CPUID while the OS (or a
// hypervisor) leaves that state off, and an instruction on it then faults.
constexpr uint64_t kXcr0Avx = 0x6;
constexpr uint64_t kXcr0Avx512 = 0xE6;

uint64_t os_saved_state() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0;
  unsigned low, high;
  __asm__("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
  return (static_cast<uint64_t>(high) << 32) | low;
}

Path widest_supported() {
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return Path::Portable;
  const bool fma = ecx & bit_FMA;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return Path::Portable;
  const bool avx2 = ebx & bit_AVX2;
  const bool avx512 = (ebx & bit_AVX512F) && (ebx & bit_AVX512BW) && (ebx & bit_AVX512VL) && (ebx & bit_AVX512DQ);
  const uint64_t state = os_saved_state();
  if (avx512 && avx2 && fma && (state & kXcr0Avx512) == kXcr0Avx512) return Path::Avx512;
  if (avx2 && fma && (state & kXcr0Avx) == kXcr0Avx) return Path::Avx2;
  return Path::Portable;
}
#endif

// What this build can run here, computed once.
Path widest_available() {
#if FT_HAVE_AVX2
  static const Path widest = widest_supported();
#if !FT_HAVE_AVX512
  if (widest == Path::Avx512) return Path::Avx2;
#endif
  return widest;
#else
  return Path::Portable;
#endif
}

// FUSEDTRAIN_SIMD=avx2 (or avx2+fma) or portable forces a narrower path, for tests and
// comparisons; avx512 (or an unknown value) asks for the widest available. Python reports an
// unknown value (fusedtrain/_info.py).
Path initial_path() {
  const Path widest = widest_available();
  const char* forced = std::getenv("FUSEDTRAIN_SIMD");
  if (!forced) return widest;
  Path asked = widest;
  if (std::strcmp(forced, "portable") == 0) asked = Path::Portable;
  if (std::strcmp(forced, "avx2") == 0 || std::strcmp(forced, "avx2+fma") == 0) asked = Path::Avx2;
  return asked < widest ? asked : widest;
}

std::atomic<Path>& current_path() {
  static std::atomic<Path> path{initial_path()};
  return path;
}

bool parse_path(const std::string& name, Path* path) {
  for (int i = 0; i < 3; ++i) {
    if (name == kPathNames[i]) {
      *path = static_cast<Path>(i);
      return true;
    }
  }
  return false;
}

}  // namespace

#define FT_CALL_PORTABLE(name, ...) generic::name(__VA_ARGS__)
#if FT_HAVE_AVX2
#define FT_CALL_AVX2(name, ...) avx2::name(__VA_ARGS__)
#else
#define FT_CALL_AVX2 FT_CALL_PORTABLE
#endif
#if FT_HAVE_AVX512
#define FT_CALL_AVX512(name, ...) avx512::name(__VA_ARGS__)
#else
#define FT_CALL_AVX512 FT_CALL_AVX2
#endif
#define FT_DISPATCH(name, ...)                                                 \
  (current_path().load(std::memory_order_relaxed) == Path::Avx512 ? FT_CALL_AVX512(name, __VA_ARGS__) \
   : current_path().load(std::memory_order_relaxed) == Path::Avx2 ? FT_CALL_AVX2(name, __VA_ARGS__)   \
                                                                   : FT_CALL_PORTABLE(name, __VA_ARGS__))

const char* simd_path() { return kPathNames[static_cast<int>(current_path().load())]; }

bool simd_available(const std::string& path) {
  Path parsed;
  return parse_path(path, &parsed) && parsed <= widest_available();
}

void set_simd_path(const std::string& path) {
  Path parsed;
  if (!parse_path(path, &parsed) || parsed > widest_available()) {
    throw std::invalid_argument("SIMD path '" + path + "' is not available on this CPU/build");
  }
  current_path().store(parsed);
}

namespace {

// One thread count for the whole process. OpenMP's own setting (omp_set_num_threads) belongs to
// the thread that sets it, so a kernel called from another thread (a Python worker thread, say)
// would not obey it; the kernels read this count instead. It starts at OpenMP's default, which
// honours OMP_NUM_THREADS.
std::atomic<int>& thread_count() {
  static std::atomic<int> count{omp_get_max_threads()};
  return count;
}

// Until when (steady_ns) parallel regions run on one thread (cpu/parallel.h, RegionWatch).
std::atomic<int64_t>& one_thread_until() {
  static std::atomic<int64_t> until{0};
  return until;
}
constexpr int64_t kOneThreadNs = 20000000;

}  // namespace

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int kernel_threads() { return thread_count().load(std::memory_order_relaxed); }

int running_threads(int chunks) {
  if (chunks > 1 && one_thread_until().load(std::memory_order_relaxed) > steady_ns()) return 1;
  return chunks;
}

void note_region(bool late) {
  // One preemption (another process's) makes one region late; a core held by another library's
  // spinning threads makes every region late. Two late regions in a row start the 20 ms on one
  // thread.
  static std::atomic<int> late_in_a_row{0};
  if (!late) {
    late_in_a_row.store(0, std::memory_order_relaxed);
  } else if (late_in_a_row.fetch_add(1, std::memory_order_relaxed) + 1 >= 2) {
    late_in_a_row.store(0, std::memory_order_relaxed);
    one_thread_until().store(steady_ns() + kOneThreadNs, std::memory_order_relaxed);
  }
}

int get_num_threads() { return kernel_threads(); }

void set_num_threads(int threads) {
  if (threads < 1) {
    throw std::invalid_argument("fusedtrain::cpu::set_num_threads: threads must be >= 1, got " +
                                std::to_string(threads));
  }
  thread_count().store(threads, std::memory_order_relaxed);
}

namespace {

// ---- argument checks ------------------------------------------------------------------------
// The public entry points check what the kernels trust: sizes, pointers, leading dimensions,
// enumerations and labels. They run before any kernel (and so before any OpenMP region) starts,
// which is what lets them throw std::invalid_argument instead of taking the process down. The
// message names the function and the argument, as fusedtrain/cpu.h documents.

[[noreturn]] void fail(const char* function, const std::string& message) {
  throw std::invalid_argument(std::string("fusedtrain::cpu::") + function + ": " + message);
}

void check_size(const char* function, const char* name, int64_t value) {
  if (value < 0) fail(function, std::string(name) + " must be >= 0, got " + std::to_string(value));
}

// A row-major array of `rows` rows `row_length` elements apart (its columns, or a leading
// dimension) must have all its offsets in int64_t: the kernels form offsets up to rows *
// row_length. Asked by division, since forming a product that overflows is itself undefined.
// Returns the element count. Both sizes are >= 0 (checked first).
int64_t check_extent(const char* function, const char* array, int64_t rows, const char* row_length_name,
                     int64_t row_length) {
  if (row_length > 0 && rows > INT64_MAX / row_length) {
    fail(function, std::string(array) + " of " + std::to_string(rows) + " rows x " + row_length_name + " = " +
                       std::to_string(row_length) + " has more elements than int64_t can count");
  }
  return rows * row_length;
}

// `pointer` may be null only when the kernel reads or writes none of its elements.
void check_data(const char* function, const char* name, const void* pointer, bool needed) {
  if (needed && pointer == nullptr) fail(function, std::string(name) + " is a null pointer");
}

// A row-major array whose rows hold `columns` elements needs a leading dimension of at least that.
void check_leading_dimension(const char* function, const char* name, int64_t leading, const char* array,
                             int64_t columns) {
  if (leading < columns) {
    fail(function, std::string(name) + " = " + std::to_string(leading) +
                       " is smaller than the row length of " + array + " (" + std::to_string(columns) + ")");
  }
}

void check_activation(const char* function, Activation activation) {
  int value = static_cast<int>(activation);
  if (value < static_cast<int>(Activation::None) || value > static_cast<int>(Activation::Gelu)) {
    fail(function, "unknown activation " + std::to_string(value));
  }
}

void check_reduction(const char* function, Reduction reduction) {
  if (reduction != Reduction::Mean && reduction != Reduction::Sum) {
    fail(function, "unknown reduction " + std::to_string(static_cast<int>(reduction)));
  }
}

// rate must lie in [0, 1): written so that NaN fails too.
void check_rate(const char* function, float rate) {
  if (!(rate >= 0.0f && rate < 1.0f)) fail(function, "rate must be in [0, 1), got " + std::to_string(rate));
}

template <class Label>
void check_labels(const char* function, const Label* labels, int64_t rows, int64_t classes) {
  for (int64_t i = 0; i < rows; ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      fail(function, "labels[" + std::to_string(i) + "] = " + std::to_string(labels[i]) + " is outside [0, " +
                         std::to_string(classes) + ")");
    }
  }
}

// Shared by the elementwise entry points: n >= 0 and every array present when n > 0.
void check_elementwise(const char* function, int64_t n,
                       std::initializer_list<std::pair<const char*, const void*>> arrays) {
  check_size(function, "n", n);
  for (const auto& [name, pointer] : arrays) check_data(function, name, pointer, n > 0);
}

template <class Label>
void check_softmax_cross_entropy(const float* logits, const Label* labels, int64_t rows, int64_t classes,
                                 Reduction reduction) {
  const char* function = "softmax_cross_entropy_loss";
  check_size(function, "rows", rows);
  if (classes < 1) fail(function, "classes must be >= 1, got " + std::to_string(classes));
  check_reduction(function, reduction);
  check_extent(function, "logits", rows, "classes", classes);
  check_data(function, "logits", logits, rows > 0);
  check_data(function, "labels", labels, rows > 0);
  check_labels(function, labels, rows, classes);
}

template <class Label>
void check_count_correct(const float* scores, const Label* labels, int64_t rows, int64_t cols) {
  const char* function = "count_correct";
  check_size(function, "rows", rows);
  check_size(function, "cols", cols);
  check_extent(function, "scores", rows, "cols", cols);
  if (rows > 0 && cols == 0) fail(function, "rows have no columns to take the argmax of");
  check_data(function, "scores", scores, rows > 0);
  check_data(function, "labels", labels, rows > 0);
  check_labels(function, labels, rows, cols);
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc,
          const float* bias, Activation activation, float activation_param) {
  const char* function = "gemm";
  check_size(function, "m", m);
  check_size(function, "n", n);
  check_size(function, "k", k);
  check_activation(function, activation);
  // A is stored m x k (k x m when transposed), B k x n (n x k), C m x n, all row-major.
  check_leading_dimension(function, "lda", lda, "a", trans_a ? m : k);
  check_leading_dimension(function, "ldb", ldb, "b", trans_b ? k : n);
  check_leading_dimension(function, "ldc", ldc, "c", n);
  check_extent(function, "a", trans_a ? k : m, "lda", lda);
  check_extent(function, "b", trans_b ? n : k, "ldb", ldb);
  check_extent(function, "c", m, "ldc", ldc);
  bool product = m > 0 && n > 0 && k > 0;
  check_data(function, "a", a, product);
  check_data(function, "b", b, product);
  check_data(function, "c", c, m > 0 && n > 0);
  FT_DISPATCH(gemm, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, activation,
              activation_param);
}

void activation_forward(Activation activation, float param, const float* x, float* y, int64_t n) {
  check_activation("activation_forward", activation);
  check_elementwise("activation_forward", n, {{"x", x}, {"y", y}});
  FT_DISPATCH(activation_forward, activation, param, x, y, n);
}

void activation_backward(Activation activation, float param, const float* grad_output,
                         const float* x, float* grad_input, int64_t n) {
  check_activation("activation_backward", activation);
  check_elementwise("activation_backward", n,
                    {{"grad_output", grad_output}, {"x", x}, {"grad_input", grad_input}});
  FT_DISPATCH(activation_backward, activation, param, grad_output, x, grad_input, n);
}

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  check_size("softmax_forward", "rows", rows);
  check_size("softmax_forward", "cols", cols);
  check_elementwise("softmax_forward", check_extent("softmax_forward", "x", rows, "cols", cols), {{"x", x}, {"y", y}});
  FT_DISPATCH(softmax_forward, x, y, rows, cols);
}

void softmax_backward(const float* grad_output, const float* x, float* grad_input, int64_t rows,
                      int64_t cols) {
  check_size("softmax_backward", "rows", rows);
  check_size("softmax_backward", "cols", cols);
  check_elementwise("softmax_backward", check_extent("softmax_backward", "x", rows, "cols", cols),
                    {{"grad_output", grad_output}, {"x", x}, {"grad_input", grad_input}});
  FT_DISPATCH(softmax_backward, grad_output, x, grad_input, rows, cols);
}

double mse_loss(const float* pred, const float* target, float* grad, int64_t n, Reduction reduction) {
  check_reduction("mse_loss", reduction);
  check_elementwise("mse_loss", n, {{"pred", pred}, {"target", target}});
  return FT_DISPATCH(mse_loss, pred, target, grad, n, reduction);
}

double binary_cross_entropy_loss(const float* logits, const float* target, float* grad, int64_t n,
                                 Reduction reduction) {
  check_reduction("binary_cross_entropy_loss", reduction);
  check_elementwise("binary_cross_entropy_loss", n, {{"logits", logits}, {"target", target}});
  return FT_DISPATCH(binary_cross_entropy_loss, logits, target, grad, n, reduction);
}

double softmax_cross_entropy_loss(const float* logits, const int32_t* labels, float* grad,
                                  int64_t rows, int64_t classes, Reduction reduction) {
  check_softmax_cross_entropy(logits, labels, rows, classes, reduction);
  return FT_DISPATCH(softmax_cross_entropy_loss, logits, labels, grad, rows, classes, reduction);
}

double softmax_cross_entropy_loss(const float* logits, const int64_t* labels, float* grad,
                                  int64_t rows, int64_t classes, Reduction reduction) {
  check_softmax_cross_entropy(logits, labels, rows, classes, reduction);
  return FT_DISPATCH(softmax_cross_entropy_loss, logits, labels, grad, rows, classes, reduction);
}

void bias_grad(const float* grad_output, float* grad_bias, int64_t rows, int64_t cols) {
  check_size("bias_grad", "rows", rows);
  check_size("bias_grad", "cols", cols);
  check_extent("bias_grad", "grad_output", rows, "cols", cols);
  check_data("bias_grad", "grad_output", grad_output, rows > 0 && cols > 0);
  check_data("bias_grad", "grad_bias", grad_bias, cols > 0);
  FT_DISPATCH(bias_grad, grad_output, grad_bias, rows, cols);
}

void argmax_rows(const float* x, int64_t* indices, int64_t rows, int64_t cols) {
  check_size("argmax_rows", "rows", rows);
  check_size("argmax_rows", "cols", cols);
  check_extent("argmax_rows", "x", rows, "cols", cols);
  if (rows > 0 && cols == 0) fail("argmax_rows", "rows have no columns to take the argmax of");
  check_data("argmax_rows", "x", x, rows > 0);
  check_data("argmax_rows", "indices", indices, rows > 0);
  FT_DISPATCH(argmax_rows, x, indices, rows, cols);
}

int64_t count_correct(const float* scores, const int32_t* labels, int64_t rows, int64_t cols) {
  check_count_correct(scores, labels, rows, cols);
  return FT_DISPATCH(count_correct, scores, labels, rows, cols);
}

int64_t count_correct(const float* scores, const int64_t* labels, int64_t rows, int64_t cols) {
  check_count_correct(scores, labels, rows, cols);
  return FT_DISPATCH(count_correct, scores, labels, rows, cols);
}

double sum_of_squares(const float* x, int64_t n) {
  check_elementwise("sum_of_squares", n, {{"x", x}});
  return FT_DISPATCH(sum_of_squares, x, n);
}

void scale(float* x, int64_t n, float factor) {
  check_elementwise("scale", n, {{"x", x}});
  FT_DISPATCH(scale, x, n, factor);
}

void gather_rows(const void* source, int64_t source_rows, int64_t row_bytes, const int64_t* indices,
                 int64_t count, void* out) {
  check_size("gather_rows", "source_rows", source_rows);
  check_size("gather_rows", "row_bytes", row_bytes);
  check_size("gather_rows", "count", count);
  check_extent("gather_rows", "source", source_rows, "row_bytes", row_bytes);
  check_extent("gather_rows", "out", count, "row_bytes", row_bytes);
  const bool copies = count > 0 && row_bytes > 0;
  check_data("gather_rows", "source", source, copies);
  check_data("gather_rows", "indices", indices, count > 0);
  check_data("gather_rows", "out", out, copies);
  for (int64_t i = 0; i < count; ++i) {
    if (indices[i] < 0 || indices[i] >= source_rows) {
      fail("gather_rows", "indices[" + std::to_string(i) + "] = " + std::to_string(indices[i]) +
                              " is outside [0, " + std::to_string(source_rows) + ")");
    }
  }
  if (!copies) return;
  FT_DISPATCH(gather_rows, source, source_rows, row_bytes, indices, count, out);
}

void sgd_step(float* param, const float* grad, float* velocity, int64_t n, float lr, float momentum,
              bool nesterov, float weight_decay) {
  check_elementwise("sgd_step", n, {{"param", param}, {"grad", grad}});
  if (n > 0 && momentum != 0.0f && velocity == nullptr) {
    fail("sgd_step", "velocity is a null pointer, but momentum = " + std::to_string(momentum) + " needs it");
  }
  FT_DISPATCH(sgd_step, param, grad, velocity, n, lr, momentum, nesterov, weight_decay);
}

void adam_step(float* param, const float* grad, float* m, float* v, int64_t n, int64_t step, float lr,
               float beta1, float beta2, float eps, float weight_decay, bool decoupled) {
  if (step < 1) fail("adam_step", "step counts from 1, got " + std::to_string(step));
  check_elementwise("adam_step", n, {{"param", param}, {"grad", grad}, {"m", m}, {"v", v}});
  FT_DISPATCH(adam_step, param, grad, m, v, n, step, lr, beta1, beta2, eps, weight_decay, decoupled);
}

void rmsprop_step(float* param, const float* grad, float* square_avg, int64_t n, float lr, float alpha,
                  float eps, float weight_decay) {
  check_elementwise("rmsprop_step", n, {{"param", param}, {"grad", grad}, {"square_avg", square_avg}});
  FT_DISPATCH(rmsprop_step, param, grad, square_avg, n, lr, alpha, eps, weight_decay);
}

void dropout_forward(const float* x, float* y, uint8_t* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step) {
  check_rate("dropout_forward", rate);
  check_elementwise("dropout_forward", n, {{"x", x}, {"y", y}, {"mask", mask}});
  FT_DISPATCH(dropout_forward, x, y, mask, n, rate, seed, step);
}

void dropout_backward(const float* grad_output, const uint8_t* mask, float* grad_input, int64_t n,
                      float rate) {
  check_rate("dropout_backward", rate);
  check_elementwise("dropout_backward", n,
                    {{"grad_output", grad_output}, {"mask", mask}, {"grad_input", grad_input}});
  FT_DISPATCH(dropout_backward, grad_output, mask, grad_input, n, rate);
}

double fma_probe(int64_t rounds) {
  check_size("fma_probe", "rounds", rounds);
  return FT_DISPATCH(fma_probe, rounds);
}

void triad_probe(float* a, const float* b, const float* c, float scalar, int64_t n) {
  check_elementwise("triad_probe", n, {{"a", a}, {"b", b}, {"c", c}});
  FT_DISPATCH(triad_probe, a, b, c, scalar, n);
}

}  // namespace fusedtrain::cpu
