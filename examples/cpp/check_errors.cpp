// How fusedtrain's C++ API reports misuse: every call below breaks one rule of the error
// contract in <fusedtrain/cpu.h> and must throw std::invalid_argument naming the function and
// the argument, leave its output untouched and let the program carry on. Prints one line per
// case and exits non-zero if any case went otherwise.
#include <fusedtrain/cpu.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using fusedtrain::Activation;
using fusedtrain::Reduction;
namespace cpu = fusedtrain::cpu;

int failures = 0;

// Runs `call`, which must throw std::invalid_argument whose message holds each of `expected`.
void expect_invalid(const char* description, const std::function<void()>& call,
                    const std::vector<std::string>& expected) {
  try {
    call();
  } catch (const std::invalid_argument& error) {
    std::string message = error.what();
    for (const std::string& part : expected) {
      if (message.find(part) == std::string::npos) {
        std::printf("FAIL %s: message \"%s\" lacks \"%s\"\n", description, message.c_str(), part.c_str());
        ++failures;
        return;
      }
    }
    std::printf("ok   %s: %s\n", description, message.c_str());
    return;
  } catch (const std::exception& error) {
    std::printf("FAIL %s: threw something else: %s\n", description, error.what());
    ++failures;
    return;
  }
  std::printf("FAIL %s: did not throw\n", description);
  ++failures;
}

void expect_true(const char* description, bool condition) {
  std::printf("%s %s\n", condition ? "ok  " : "FAIL", description);
  if (!condition) ++failures;
}

// The arguments of a valid gemm call, C (3 x 3) = A (3 x 4) @ B (4 x 3); each case breaks one.
struct GemmCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 3, n = 3, k = 4;
  const float* a;
  int64_t lda = 4;
  const float* b;
  int64_t ldb = 3;
  float* c;
  int64_t ldc = 3;
  Activation activation = Activation::None;

  void operator()() const {
    cpu::gemm(trans_a, trans_b, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc, nullptr, activation, 0.0f);
  }
};

}  // namespace

int main() {
  std::vector<float> a(12, 1.0f), b(12, 1.0f), c(12, -7.0f), out(12, -7.0f);
  std::vector<int32_t> labels32 = {0, 2, 3};
  std::vector<int64_t> labels64 = {0, -1, 1};
  std::vector<int64_t> indices(3, -7);
  std::vector<uint8_t> mask(12, 1);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const GemmCall valid{false, false, 3, 3, 4, a.data(), 4, b.data(), 3, c.data(), 3, Activation::None};

  // gemm: sizes, leading dimensions, pointers, the activation.
  auto gemm_with = [&](const std::function<void(GemmCall&)>& change) {
    return [&valid, change] {
      GemmCall call = valid;
      change(call);
      call();
    };
  };
  expect_invalid("gemm negative m", gemm_with([](GemmCall& g) { g.m = -1; }),
                 {"gemm", "m must be >= 0", "-1"});
  expect_invalid("gemm negative k", gemm_with([](GemmCall& g) { g.k = -2; }), {"gemm", "k must be >= 0"});
  expect_invalid("gemm lda too small", gemm_with([](GemmCall& g) { g.lda = 3; }),
                 {"gemm", "lda = 3", "row length of a (4)"});
  expect_invalid("gemm transposed lda too small", gemm_with([](GemmCall& g) {
                   g.trans_a = true;
                   g.lda = 2;
                 }),
                 {"gemm", "lda = 2", "row length of a (3)"});
  expect_invalid("gemm transposed ldb too small", gemm_with([](GemmCall& g) {
                   g.trans_b = true;
                   g.ldb = 3;
                 }),
                 {"gemm", "ldb = 3", "row length of b (4)"});
  expect_invalid("gemm ldc too small", gemm_with([](GemmCall& g) { g.ldc = 2; }), {"gemm", "ldc = 2"});
  expect_invalid("gemm null a", gemm_with([](GemmCall& g) { g.a = nullptr; }), {"gemm", "a is a null"});
  expect_invalid("gemm null c", gemm_with([](GemmCall& g) { g.c = nullptr; }), {"gemm", "c is a null"});
  expect_invalid("gemm unknown activation",
                 gemm_with([](GemmCall& g) { g.activation = static_cast<Activation>(42); }),
                 {"gemm", "activation 42"});
  expect_true("gemm left c untouched after the throws", c[0] == -7.0f && c[8] == -7.0f);
  // Nothing to read: null operands are fine when a size is zero.
  gemm_with([](GemmCall& g) {
    g.m = 0;
    g.a = g.b = nullptr;
    g.c = nullptr;
  })();
  gemm_with([](GemmCall& g) {
    g.k = 0;
    g.lda = 0;
    g.a = g.b = nullptr;
  })();
  expect_true("gemm with k = 0 and beta = 0 writes zeros", c[0] == 0.0f && c[8] == 0.0f);

  // Elementwise calls: negative n, null arrays, enumerations.
  expect_invalid("activation_forward negative n",
                 [&] { cpu::activation_forward(Activation::Relu, 0, a.data(), out.data(), -5); },
                 {"activation_forward", "n must be >= 0", "-5"});
  expect_invalid("activation_forward null y",
                 [&] { cpu::activation_forward(Activation::Relu, 0, a.data(), nullptr, 12); },
                 {"activation_forward", "y is a null"});
  expect_invalid("activation_forward unknown activation",
                 [&] { cpu::activation_forward(static_cast<Activation>(-1), 0, a.data(), out.data(), 12); },
                 {"activation_forward", "activation -1"});
  expect_invalid("activation_backward null x",
                 [&] { cpu::activation_backward(Activation::Tanh, 0, a.data(), nullptr, out.data(), 12); },
                 {"activation_backward", "x is a null"});
  expect_invalid("softmax_forward negative cols", [&] { cpu::softmax_forward(a.data(), out.data(), 3, -4); },
                 {"softmax_forward", "cols must be >= 0"});
  expect_invalid("softmax_backward null grad_output",
                 [&] { cpu::softmax_backward(nullptr, a.data(), out.data(), 3, 4); },
                 {"softmax_backward", "grad_output is a null"});
  cpu::activation_forward(Activation::Relu, 0, nullptr, nullptr, 0);

  // Losses.
  expect_invalid("mse_loss unknown reduction",
                 [&] { cpu::mse_loss(a.data(), b.data(), nullptr, 12, static_cast<Reduction>(5)); },
                 {"mse_loss", "reduction 5"});
  expect_invalid("mse_loss null target",
                 [&] { cpu::mse_loss(a.data(), nullptr, nullptr, 12, Reduction::Sum); },
                 {"mse_loss", "target is a null"});
  expect_invalid("binary_cross_entropy_loss negative n",
                 [&] { cpu::binary_cross_entropy_loss(a.data(), b.data(), nullptr, -1, Reduction::Mean); },
                 {"binary_cross_entropy_loss", "n must be >= 0"});
  expect_invalid("softmax_cross_entropy_loss label too large (int32)",
                 [&] {
                   cpu::softmax_cross_entropy_loss(a.data(), labels32.data(), out.data(), 3, 3,
                                                   Reduction::Mean);
                 },
                 {"softmax_cross_entropy_loss", "labels[2] = 3", "[0, 3)"});
  expect_invalid("softmax_cross_entropy_loss negative label (int64)",
                 [&] {
                   cpu::softmax_cross_entropy_loss(a.data(), labels64.data(), out.data(), 3, 4,
                                                   Reduction::Sum);
                 },
                 {"softmax_cross_entropy_loss", "labels[1] = -1"});
  expect_invalid("softmax_cross_entropy_loss no classes",
                 [&] {
                   cpu::softmax_cross_entropy_loss(a.data(), labels32.data(), nullptr, 3, 0, Reduction::Sum);
                 },
                 {"softmax_cross_entropy_loss", "classes must be >= 1"});
  expect_invalid("softmax_cross_entropy_loss null labels",
                 [&] {
                   const int32_t* no_labels = nullptr;
                   cpu::softmax_cross_entropy_loss(a.data(), no_labels, nullptr, 3, 4, Reduction::Sum);
                 },
                 {"softmax_cross_entropy_loss", "labels is a null"});
  expect_true("the losses left their gradient untouched", out[0] == -7.0f && out[11] == -7.0f);

  // Reductions.
  expect_invalid("bias_grad null grad_bias", [&] { cpu::bias_grad(a.data(), nullptr, 3, 4); },
                 {"bias_grad", "grad_bias is a null"});
  expect_invalid("bias_grad negative rows", [&] { cpu::bias_grad(a.data(), out.data(), -3, 4); },
                 {"bias_grad", "rows must be >= 0"});
  expect_invalid("argmax_rows rows without columns",
                 [&] { cpu::argmax_rows(a.data(), indices.data(), 3, 0); }, {"argmax_rows", "no columns"});
  expect_invalid("count_correct null labels",
                 [&] {
                   const int64_t* no_labels = nullptr;
                   cpu::count_correct(a.data(), no_labels, 3, 4);
                 },
                 {"count_correct", "labels is a null"});
  expect_invalid("sum_of_squares negative n", [&] { cpu::sum_of_squares(a.data(), -1); },
                 {"sum_of_squares", "n must be >= 0"});
  expect_invalid("scale null x", [&] { cpu::scale(nullptr, 12, 2.0f); }, {"scale", "x is a null"});
  expect_true("argmax_rows left its indices untouched", indices[0] == -7);

  // Optimizers.
  expect_invalid("sgd_step momentum without velocity",
                 [&] { cpu::sgd_step(out.data(), a.data(), nullptr, 12, 0.1f, 0.9f, false, 0); },
                 {"sgd_step", "velocity is a null", "momentum"});
  expect_invalid("adam_step step 0",
                 [&] {
                   cpu::adam_step(out.data(), a.data(), b.data(), c.data(), 12, 0, 1e-3f, 0.9f, 0.999f,
                                  1e-8f, 0, false);
                 },
                 {"adam_step", "step counts from 1"});
  expect_invalid("adam_step null v",
                 [&] {
                   cpu::adam_step(out.data(), a.data(), b.data(), nullptr, 12, 1, 1e-3f, 0.9f, 0.999f,
                                  1e-8f, 0, false);
                 },
                 {"adam_step", "v is a null"});
  expect_invalid("rmsprop_step null square_avg",
                 [&] { cpu::rmsprop_step(out.data(), a.data(), nullptr, 12, 1e-2f, 0.99f, 1e-8f, 0); },
                 {"rmsprop_step", "square_avg is a null"});
  expect_true("the optimizers left the parameters untouched", out[0] == -7.0f && out[11] == -7.0f);
  // momentum == 0 needs no velocity: p -= 0.5 * 1.
  cpu::sgd_step(out.data(), a.data(), nullptr, 12, 0.5f, 0.0f, false, 0);
  expect_true("sgd_step without momentum ran", out[0] == -7.5f);

  // Dropout.
  expect_invalid("dropout_forward rate 1",
                 [&] { cpu::dropout_forward(a.data(), out.data(), mask.data(), 12, 1.0f, 0, 0); },
                 {"dropout_forward", "rate must be in [0, 1)"});
  expect_invalid("dropout_forward NaN rate",
                 [&] { cpu::dropout_forward(a.data(), out.data(), mask.data(), 12, nan, 0, 0); },
                 {"dropout_forward", "rate must be in [0, 1)"});
  expect_invalid("dropout_backward negative rate",
                 [&] { cpu::dropout_backward(a.data(), mask.data(), out.data(), 12, -0.5f); },
                 {"dropout_backward", "rate must be in [0, 1)"});
  expect_invalid("dropout_backward null mask",
                 [&] { cpu::dropout_backward(a.data(), nullptr, out.data(), 12, 0.5f); },
                 {"dropout_backward", "mask is a null"});

  expect_invalid("set_num_threads 0", [&] { cpu::set_num_threads(0); },
                 {"set_num_threads", "threads must be >= 1"});

  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
