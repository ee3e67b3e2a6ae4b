// fused_linear: a third-party extension module that calls fusedtrain's kernels from its own C++
// code. forward(x, weight, bias=None, activation="none") computes activation(x @ weight + bias)
// in one fusedtrain::cpu::gemm call, the bias add and the activation fused into its epilogue.
// The kernel library is linked statically: at run time the module needs NumPy, not fusedtrain.
#include <fusedtrain/cpu.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace py = pybind11;

namespace {

// float32, C-contiguous; with py::arg(...).noconvert() anything else is a TypeError rather than
// a silent copy.
using Matrix = py::array_t<float, py::array::c_style>;

fusedtrain::Activation activation_from_name(const std::string& name) {
  if (name == "none") return fusedtrain::Activation::None;
  if (name == "relu") return fusedtrain::Activation::Relu;
  if (name == "sigmoid") return fusedtrain::Activation::Sigmoid;
  if (name == "tanh") return fusedtrain::Activation::Tanh;
  if (name == "gelu") return fusedtrain::Activation::Gelu;
  throw py::value_error("activation: expected 'none', 'relu', 'sigmoid', 'tanh' or 'gelu', got '" + name +
                        "'");
}

// The shapes are checked here because the kernel sees only pointers and sizes; what it can check
// (sizes, strides, pointers) it reports as std::invalid_argument, which pybind11 turns into
// ValueError.
Matrix forward(const Matrix& x, const Matrix& weight, const py::object& bias,
               const std::string& activation) {
  fusedtrain::Activation kind = activation_from_name(activation);
  if (x.ndim() != 2) throw py::value_error("x: expected a 2-D array, got " + std::to_string(x.ndim()) + "-D");
  if (weight.ndim() != 2) throw py::value_error("weight: expected a 2-D array");
  int64_t rows = x.shape(0), inputs = x.shape(1), outputs = weight.shape(1);
  if (weight.shape(0) != inputs) {
    throw py::value_error("weight: expected " + std::to_string(inputs) + " rows (x.shape[1]), got " +
                          std::to_string(weight.shape(0)));
  }
  const float* bias_data = nullptr;
  if (!bias.is_none()) {
    if (!Matrix::check_(bias)) throw py::type_error("bias: expected a float32 C-contiguous array or None");
    auto bias_array = py::reinterpret_borrow<Matrix>(bias);
    if (bias_array.ndim() != 1 || bias_array.shape(0) != outputs) {
      throw py::value_error("bias: expected shape (" + std::to_string(outputs) + ",)");
    }
    bias_data = bias_array.data();
  }
  Matrix result({rows, outputs});
  float* result_data = result.mutable_data();
  {
    py::gil_scoped_release release;
    fusedtrain::cpu::gemm(false, false, rows, outputs, inputs, 1.0f, x.data(), inputs, weight.data(), outputs,
                          0.0f, result_data, outputs, bias_data, kind, 0.0f);
  }
  return result;
}

}  // namespace

PYBIND11_MODULE(fused_linear, m) {
  m.doc() = "A dense layer's forward pass on fusedtrain's C++ kernels";
  m.def("forward", &forward, py::arg("x").noconvert(), py::arg("weight").noconvert(),
        py::arg("bias") = py::none(), py::arg("activation") = "none",
        "activation(x @ weight + bias) for float32 C-contiguous x and weight.");
  m.def("simd_path", &fusedtrain::cpu::simd_path, "The instruction-set path of this module's kernels.");
  m.def("set_num_threads", &fusedtrain::cpu::set_num_threads, py::arg("threads"),
        "The kernels' OpenMP thread count; threads < 1 raises ValueError (std::invalid_argument).");
}
