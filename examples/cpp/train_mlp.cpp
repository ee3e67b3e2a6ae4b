// Trains a two-layer perceptron in pure C++ on fusedtrain's CPU kernels: a regression onto a
// fixed random "teacher" network, 8 inputs -> 32 tanh units -> 2 outputs, full-batch Adam.
// Every parameter lives in one flat buffer (as in the Python API), so a single adam_step call
// updates them all. Prints the loss and exits non-zero unless training reduced it.
#include <fusedtrain/cpu.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <vector>

namespace {

using fusedtrain::Activation;
using fusedtrain::Reduction;
namespace cpu = fusedtrain::cpu;

constexpr int64_t samples = 256;
constexpr int64_t inputs = 8;
constexpr int64_t hidden = 32;
constexpr int64_t outputs = 2;
constexpr int steps = 200;

// Offsets of each layer's weight (row-major, inputs x outputs) and bias in the flat buffers.
constexpr int64_t w1_offset = 0;
constexpr int64_t b1_offset = w1_offset + inputs * hidden;
constexpr int64_t w2_offset = b1_offset + hidden;
constexpr int64_t b2_offset = w2_offset + hidden * outputs;
constexpr int64_t parameter_count = b2_offset + outputs;

std::vector<float> normal_values(std::mt19937& generator, int64_t count, float stddev) {
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& value : values) value = normal(generator);
  return values;
}

// a (rows x depth) @ b (depth x cols) + bias -> out, then the activation, all in one gemm call.
void dense(const float* a, const float* b, const float* bias, float* out, int64_t rows, int64_t depth,
           int64_t cols, Activation activation) {
  cpu::gemm(false, false, rows, cols, depth, 1.0f, a, depth, b, cols, 0.0f, out, cols, bias, activation,
            0.0f);
}

int train() {
  std::mt19937 generator(7);
  std::vector<float> x = normal_values(generator, samples * inputs, 1.0f);

  // Targets: a teacher network of the same shape with its own weights, applied to x.
  std::vector<float> teacher_w1 = normal_values(generator, inputs * hidden, 0.5f);
  std::vector<float> teacher_w2 = normal_values(generator, hidden * outputs, 0.5f);
  std::vector<float> teacher_hidden(samples * hidden), target(samples * outputs);
  dense(x.data(), teacher_w1.data(), nullptr, teacher_hidden.data(), samples, inputs, hidden,
        Activation::Tanh);
  dense(teacher_hidden.data(), teacher_w2.data(), nullptr, target.data(), samples, hidden, outputs,
        Activation::None);

  // The student: small random weights, zero biases; gradients and Adam moments alike in size.
  std::vector<float> params(parameter_count, 0.0f);
  std::vector<float> w1 = normal_values(generator, inputs * hidden, 0.3f);
  std::vector<float> w2 = normal_values(generator, hidden * outputs, 0.3f);
  std::copy(w1.begin(), w1.end(), params.begin() + w1_offset);
  std::copy(w2.begin(), w2.end(), params.begin() + w2_offset);
  std::vector<float> grads(parameter_count), adam_m(parameter_count, 0.0f), adam_v(parameter_count, 0.0f);

  std::vector<float> pre_activation(samples * hidden), activation(samples * hidden);
  std::vector<float> prediction(samples * outputs), grad_prediction(samples * outputs);
  std::vector<float> grad_activation(samples * hidden), grad_pre_activation(samples * hidden);
  const float* w1_data = params.data() + w1_offset;
  const float* b1_data = params.data() + b1_offset;
  const float* w2_data = params.data() + w2_offset;
  const float* b2_data = params.data() + b2_offset;

  double first_loss = 0.0, loss = 0.0;
  for (int step = 1; step <= steps; ++step) {
    // Forward. The hidden pre-activation is kept because tanh's backward needs it.
    dense(x.data(), w1_data, b1_data, pre_activation.data(), samples, inputs, hidden, Activation::None);
    cpu::activation_forward(Activation::Tanh, 0.0f, pre_activation.data(), activation.data(),
                            samples * hidden);
    dense(activation.data(), w2_data, b2_data, prediction.data(), samples, hidden, outputs, Activation::None);
    loss = cpu::mse_loss(prediction.data(), target.data(), grad_prediction.data(), samples * outputs,
                         Reduction::Mean);
    if (step == 1) first_loss = loss;
    if (step == 1 || step % 50 == 0) std::printf("step %3d  loss %.6f\n", step, loss);

    // Backward, layer 2: dW2 = activation^T @ dPrediction, db2 = column sums of dPrediction,
    // dActivation = dPrediction @ W2^T.
    cpu::gemm(true, false, hidden, outputs, samples, 1.0f, activation.data(), hidden, grad_prediction.data(),
              outputs, 0.0f, grads.data() + w2_offset, outputs, nullptr, Activation::None, 0.0f);
    cpu::bias_grad(grad_prediction.data(), grads.data() + b2_offset, samples, outputs);
    cpu::gemm(false, true, samples, hidden, outputs, 1.0f, grad_prediction.data(), outputs, w2_data, outputs,
              0.0f, grad_activation.data(), hidden, nullptr, Activation::None, 0.0f);
    // Layer 1, through tanh: dW1 = x^T @ dPre, db1 = column sums of dPre.
    cpu::activation_backward(Activation::Tanh, 0.0f, grad_activation.data(), pre_activation.data(),
                             grad_pre_activation.data(), samples * hidden);
    cpu::gemm(true, false, inputs, hidden, samples, 1.0f, x.data(), inputs, grad_pre_activation.data(),
              hidden, 0.0f, grads.data() + w1_offset, hidden, nullptr, Activation::None, 0.0f);
    cpu::bias_grad(grad_pre_activation.data(), grads.data() + b1_offset, samples, hidden);

    cpu::adam_step(params.data(), grads.data(), adam_m.data(), adam_v.data(), parameter_count, step, 1e-2f,
                   0.9f, 0.999f, 1e-8f, 0.0f, false);
  }

  std::printf("simd %s, %d threads: loss %.6f -> %.6f\n", cpu::simd_path(), cpu::get_num_threads(),
              first_loss, loss);
  // The student can represent the teacher exactly; 200 Adam steps take off well over half the loss.
  if (!(loss < 0.5 * first_loss)) {
    std::fprintf(stderr, "training did not reduce the loss enough\n");
    return 1;
  }
  return 0;
}

}  // namespace

int main() {
  // The kernel API reports bad arguments by throwing std::invalid_argument (fusedtrain/cpu.h).
  try {
    return train();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "error: %s\n", error.what());
    return 1;
  }
}
