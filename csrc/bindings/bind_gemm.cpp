// Binding of the GEMM kernel. ops.matmul calls it first with its arguments as the user gave
// them: when every one is what matmul accepts as is (NumPy float32 arrays of the right shapes,
// booleans, finite Python numbers, an activation name), it runs the multiply and returns the
// output; otherwise it returns None, having touched nothing, and matmul's Python checks name the
// argument at fault. The common call then costs no Python-level checking at all, which is what
// matters for small matrices, where a microsecond is a large share of the multiply.
#include <Python.h>

#include <cmath>
#include <limits>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

namespace {

constexpr int kFloat32 = 11;  // NPY_FLOAT
using NumpyArray = py::detail::PyArray_Proxy;

// A NumPy float32 array in native byte order, C-contiguous and aligned, of `ndim` dimensions,
// or null.
NumpyArray* float_array(py::handle value, int ndim) {
  if (!py::array::check_(value)) return nullptr;
  NumpyArray* fields = py::detail::array_proxy(value.ptr());
  auto* descr = py::detail::array_descriptor_proxy(fields->descr);
  if (descr->type_num != kFloat32 || descr->byteorder != '=' || fields->nd != ndim) return nullptr;
  constexpr int kLayout = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if ((fields->flags & kLayout) != kLayout) return nullptr;
  return fields;
}

// A Python float or int (not bool, not a NumPy scalar: those take matmul's checks) that is
// finite in float32, as ops._checks.real requires.
bool finite_number(py::handle value, float* result) {
  double number;
  if (PyFloat_CheckExact(value.ptr())) {
    number = PyFloat_AS_DOUBLE(value.ptr());
  } else if (PyLong_CheckExact(value.ptr())) {
    number = PyLong_AsDouble(value.ptr());
    if (number == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
  } else {
    return false;
  }
  if (!(std::fabs(number) <= std::numeric_limits<float>::max())) return false;
  *result = static_cast<float>(number);
  return true;
}

bool flag(py::handle value, bool* result) {
  if (value.ptr() != Py_True && value.ptr() != Py_False) return false;
  *result = value.ptr() == Py_True;
  return true;
}

// None (no activation) or a name that `codes` (ops.activations.ACTIVATIONS) maps to its code.
bool activation_code(py::handle name, py::handle codes, int* result) {
  if (name.is_none()) {
    *result = static_cast<int>(Activation::None);
    return true;
  }
  if (!PyUnicode_CheckExact(name.ptr()) || !PyDict_CheckExact(codes.ptr())) return false;
  PyObject* code = PyDict_GetItemWithError(codes.ptr(), name.ptr());
  if (!code) {
    PyErr_Clear();
    return false;
  }
  long value = PyLong_AsLong(code);
  if (value == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  if (value <= static_cast<long>(Activation::None) || value > static_cast<long>(Activation::Gelu)) return false;
  *result = static_cast<int>(value);
  return true;
}

// out = activation(alpha * op(a) @ op(b) + beta * out + bias), or None when an argument is not
// one ops.matmul accepts as is (see the top of the file).
py::object gemm(py::handle a, py::handle b, py::handle out, py::handle bias, py::handle trans_a,
                py::handle trans_b, py::handle alpha, py::handle beta, py::handle activation,
                py::handle negative_slope, py::handle codes) {
  NumpyArray* a_array = float_array(a, 2);
  NumpyArray* b_array = float_array(b, 2);
  bool transpose_a, transpose_b;
  float alpha_value, beta_value, slope;
  int code;
  if (!a_array || !b_array || !flag(trans_a, &transpose_a) || !flag(trans_b, &transpose_b) ||
      !finite_number(alpha, &alpha_value) || !finite_number(beta, &beta_value) ||
      !finite_number(negative_slope, &slope) || !activation_code(activation, codes, &code)) {
    return py::none();
  }
  const int64_t m = a_array->dimensions[transpose_a ? 1 : 0];
  const int64_t k = a_array->dimensions[transpose_a ? 0 : 1];
  const int64_t n = b_array->dimensions[transpose_b ? 0 : 1];
  if (b_array->dimensions[transpose_b ? 1 : 0] != k) return py::none();
  NumpyArray* bias_array = nullptr;
  if (!bias.is_none()) {
    bias_array = float_array(bias, 1);
    if (!bias_array || bias_array->dimensions[0] != n) return py::none();
  }
  py::array result;
  if (out.is_none()) {
    if (beta_value != 0.0f) return py::none();
    result = py::array_t<float>({m, n});
  } else {
    NumpyArray* out_array = float_array(out, 2);
    if (!out_array || out_array->dimensions[0] != m || out_array->dimensions[1] != n ||
        !(out_array->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_)) {
      return py::none();
    }
    result = py::reinterpret_borrow<py::array>(out);
    auto overlaps_out = [&](py::handle input) {
      return overlap(result, py::reinterpret_borrow<py::array>(input)) != 0;
    };
    if (overlaps_out(a) || overlaps_out(b) || (bias_array && overlaps_out(bias))) return py::none();
  }
  const float* a_data = reinterpret_cast<const float*>(a_array->data);
  const float* b_data = reinterpret_cast<const float*>(b_array->data);
  const float* bias_data = bias_array ? reinterpret_cast<const float*>(bias_array->data) : nullptr;
  float* c_data = static_cast<float*>(result.mutable_data());
  const int64_t lda = a_array->dimensions[1], ldb = b_array->dimensions[1];
  {
    py::gil_scoped_release release;
    cpu::gemm(transpose_a, transpose_b, m, n, k, alpha_value, a_data, lda, b_data, ldb, beta_value, c_data, n,
              bias_data, static_cast<Activation>(code), slope);
  }
  return std::move(result);
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("out"), py::arg("bias"), py::arg("trans_a"),
        py::arg("trans_b"), py::arg("alpha"), py::arg("beta"), py::arg("activation"), py::arg("negative_slope"),
        py::arg("codes"));
}

}  // namespace fusedtrain::bindings
