// Binding of the GEMM kernel on 2-D C-contiguous float32 arrays.
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

// c = activation(alpha * op(a) @ op(b) + beta * c + bias), shapes taken from the arrays.
static void gemm(const py::array& a, const py::array& b, py::array& c, const py::object& bias,
                 bool trans_a, bool trans_b, float alpha, float beta, int activation, float param) {
  require(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2, "gemm: a, b and c must be 2-D");
  int64_t m = trans_a ? dim(a, 1) : dim(a, 0);
  int64_t k = trans_a ? dim(a, 0) : dim(a, 1);
  int64_t k_b = trans_b ? dim(b, 1) : dim(b, 0);
  int64_t n = trans_b ? dim(b, 0) : dim(b, 1);
  require(k == k_b, "gemm: inner dimensions differ");
  require(dim(c, 0) == m && dim(c, 1) == n, "gemm: c has the wrong shape");
  require(activation >= 0 && activation <= static_cast<int>(Activation::Gelu), "gemm: unknown activation");
  const float* a_data = input<float>(a, "a");
  const float* b_data = input<float>(b, "b");
  float* c_data = output<float>(c, "c");
  const float* bias_data = optional_input<float>(bias, "bias", n);
  py::gil_scoped_release release;
  cpu::gemm(trans_a, trans_b, m, n, k, alpha, a_data, dim(a, 1), b_data, dim(b, 1), beta, c_data, n,
            bias_data, static_cast<Activation>(activation), param);
}

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("bias"), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("alpha"), py::arg("beta"), py::arg("activation"), py::arg("param"));
}

}  // namespace fusedtrain::bindings
