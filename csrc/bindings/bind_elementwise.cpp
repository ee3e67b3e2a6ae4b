// Bindings of the activations, softmax and the row/column reductions.
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

static Activation to_activation(int activation) {
  require(activation >= 0 && activation <= static_cast<int>(Activation::Gelu), "unknown activation");
  return static_cast<Activation>(activation);
}

static void activation_forward(int activation, float param, const py::array& x, py::array& y) {
  Activation act = to_activation(activation);
  const float* x_data = input<float>(x, "x");
  float* y_data = output<float>(y, "out", x.size());
  py::gil_scoped_release release;
  cpu::activation_forward(act, param, x_data, y_data, x.size());
}

static void activation_backward(int activation, float param, const py::array& grad_output,
                                const py::array& x, py::array& grad_input) {
  Activation act = to_activation(activation);
  const float* x_data = input<float>(x, "x");
  const float* grad_data = input<float>(grad_output, "grad_output", x.size());
  float* out_data = output<float>(grad_input, "out", x.size());
  py::gil_scoped_release release;
  cpu::activation_backward(act, param, grad_data, x_data, out_data, x.size());
}

// Row-wise ops see an array as (size / cols) rows of its last dimension.
static int64_t last_dim(const py::array& x) {
  require(x.ndim() >= 1, "expected at least 1 dimension");
  return dim(x, static_cast<int>(x.ndim()) - 1);
}

static void softmax_forward(const py::array& x, py::array& y) {
  int64_t cols = last_dim(x);
  int64_t rows = cols ? x.size() / cols : 0;
  const float* x_data = input<float>(x, "x");
  float* y_data = output<float>(y, "out", x.size());
  py::gil_scoped_release release;
  cpu::softmax_forward(x_data, y_data, rows, cols);
}

static void softmax_backward(const py::array& grad_output, const py::array& x, py::array& grad_input) {
  int64_t cols = last_dim(x);
  int64_t rows = cols ? x.size() / cols : 0;
  const float* x_data = input<float>(x, "x");
  const float* grad_data = input<float>(grad_output, "grad_output", x.size());
  float* out_data = output<float>(grad_input, "out", x.size());
  py::gil_scoped_release release;
  cpu::softmax_backward(grad_data, x_data, out_data, rows, cols);
}

static void bias_grad(const py::array& grad_output, py::array& grad_bias) {
  require(grad_output.ndim() == 2, "bias_grad: grad_output must be 2-D");
  int64_t rows = dim(grad_output, 0), cols = dim(grad_output, 1);
  const float* grad_data = input<float>(grad_output, "grad_output");
  float* out_data = output<float>(grad_bias, "out", cols);
  py::gil_scoped_release release;
  cpu::bias_grad(grad_data, out_data, rows, cols);
}

// out[i] = source[indices[i]] along the first axis, for C-contiguous arrays of one dtype (any).
static void gather_rows(const py::array& source, const py::array& indices, py::array& out) {
  require(source.ndim() >= 1, "gather_rows: source must have at least one dimension");
  require(source.flags() & py::array::c_style, "gather_rows: source: expected a C-contiguous array");
  require(!source.dtype().attr("hasobject").cast<bool>(),
          "gather_rows: source: expected numbers, not Python objects (their references are not copied)");
  require(indices.ndim() == 1, "gather_rows: indices must be 1-D");
  const int64_t* index_data = input<int64_t>(indices, "indices");
  require(out.dtype().is(source.dtype()), "gather_rows: out: expected the dtype of source");
  require(out.flags() & py::array::c_style, "gather_rows: out: expected a C-contiguous array");
  require(out.writeable(), "gather_rows: out: the array is read-only");
  require(out.ndim() == source.ndim() && dim(out, 0) == dim(indices, 0),
          "gather_rows: out: expected one row per index, shaped as the rows of source");
  for (py::ssize_t axis = 1; axis < source.ndim(); ++axis) {
    require(out.shape(axis) == source.shape(axis),
            "gather_rows: out: expected one row per index, shaped as the rows of source");
  }
  require(overlap(out, source) == 0 && overlap(out, indices) == 0,
          "gather_rows: out may not overlap source or indices");
  const int64_t rows = dim(source, 0);
  int64_t row_bytes = source.itemsize();
  for (py::ssize_t axis = 1; axis < source.ndim(); ++axis) row_bytes *= dim(source, static_cast<int>(axis));
  const void* source_data = source.data();
  void* out_data = out.mutable_data();
  const int64_t count = dim(indices, 0);
  py::gil_scoped_release release;
  cpu::gather_rows(source_data, rows, row_bytes, index_data, count, out_data);
}

static void argmax_rows(const py::array& x, py::array& indices) {
  require(x.ndim() == 2, "argmax: x must be 2-D");
  int64_t rows = dim(x, 0), cols = dim(x, 1);
  require(cols > 0 || rows == 0, "argmax: x has no columns");
  const float* x_data = input<float>(x, "x");
  int64_t* out_data = output<int64_t>(indices, "out", rows);
  py::gil_scoped_release release;
  cpu::argmax_rows(x_data, out_data, rows, cols);
}

template <class Label>
static int64_t count_correct_typed(const py::array& scores, const py::array& labels, int64_t rows,
                                   int64_t cols) {
  const float* score_data = input<float>(scores, "scores");
  const Label* label_data = input<Label>(labels, "labels", rows);
  py::gil_scoped_release release;
  return cpu::count_correct(score_data, label_data, rows, cols);
}

static int64_t count_correct(const py::array& scores, const py::array& labels) {
  require(scores.ndim() == 2, "count_correct: scores must be 2-D");
  int64_t rows = dim(scores, 0), cols = dim(scores, 1);
  require(cols > 0 || rows == 0, "count_correct: scores has no columns");
  if (has_dtype<int32_t>(labels)) return count_correct_typed<int32_t>(scores, labels, rows, cols);
  return count_correct_typed<int64_t>(scores, labels, rows, cols);
}

static double sum_of_squares(const py::array& x) {
  const float* x_data = input<float>(x, "x");
  py::gil_scoped_release release;
  return cpu::sum_of_squares(x_data, x.size());
}

static void scale(py::array& x, float factor) {
  float* x_data = output<float>(x, "x");
  py::gil_scoped_release release;
  cpu::scale(x_data, x.size(), factor);
}

void bind_elementwise(py::module_& m) {
  m.def("activation_forward", &activation_forward, py::arg("activation"), py::arg("param"), py::arg("x"),
        py::arg("out"));
  m.def("activation_backward", &activation_backward, py::arg("activation"), py::arg("param"),
        py::arg("grad_output"), py::arg("x"), py::arg("out"));
  m.def("softmax_forward", &softmax_forward, py::arg("x"), py::arg("out"));
  m.def("softmax_backward", &softmax_backward, py::arg("grad_output"), py::arg("x"), py::arg("out"));
  m.def("bias_grad", &bias_grad, py::arg("grad_output"), py::arg("out"));
  m.def("gather_rows", &gather_rows, py::arg("source"), py::arg("indices"), py::arg("out"));
  m.def("argmax_rows", &argmax_rows, py::arg("x"), py::arg("out"));
  m.def("count_correct", &count_correct, py::arg("scores"), py::arg("labels"));
  m.def("sum_of_squares", &sum_of_squares, py::arg("x"));
  m.def("scale", &scale, py::arg("x"), py::arg("factor"));
}

}  // namespace fusedtrain::bindings
