// Bindings of dropout: the mask is a uint8 array of 0/1 of the input's size.
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

static void dropout_forward(const py::array& x, py::array& y, py::array& mask, float rate, uint64_t seed,
                            uint64_t step) {
  require(rate >= 0.0f && rate < 1.0f, "dropout: rate must be in [0, 1)");
  const float* x_data = input<float>(x, "x");
  float* y_data = output<float>(y, "out", x.size());
  uint8_t* mask_data = output<uint8_t>(mask, "mask_out", x.size());
  py::gil_scoped_release release;
  cpu::dropout_forward(x_data, y_data, mask_data, x.size(), rate, seed, step);
}

static void dropout_backward(const py::array& grad_output, const py::array& mask, py::array& grad_input,
                             float rate) {
  require(rate >= 0.0f && rate < 1.0f, "dropout_grad: rate must be in [0, 1)");
  const float* grad_data = input<float>(grad_output, "grad_output");
  const uint8_t* mask_data = input<uint8_t>(mask, "mask", grad_output.size());
  float* out_data = output<float>(grad_input, "out", grad_output.size());
  py::gil_scoped_release release;
  cpu::dropout_backward(grad_data, mask_data, out_data, grad_output.size(), rate);
}

void bind_dropout(py::module_& m) {
  m.def("dropout_forward", &dropout_forward, py::arg("x"), py::arg("out"), py::arg("mask_out"),
        py::arg("rate"), py::arg("seed"), py::arg("step"));
  m.def("dropout_backward", &dropout_backward, py::arg("grad_output"), py::arg("mask"), py::arg("out"),
        py::arg("rate"));
}

}  // namespace fusedtrain::bindings
