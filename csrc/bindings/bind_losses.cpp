// Bindings of the losses: each returns the loss and writes the gradient (unless grad is None).
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

static Reduction to_reduction(int reduction) {
  require(reduction == 0 || reduction == 1, "unknown reduction");
  return static_cast<Reduction>(reduction);
}

static float* optional_grad(py::object& grad, int64_t size) {
  if (grad.is_none()) return nullptr;
  py::array array = grad.cast<py::array>();
  return output<float>(array, "out", size);
}

// Elementwise losses: pred/logits and target of the same size.
template <double (*Loss)(const float*, const float*, float*, int64_t, Reduction)>
static double elementwise_loss(const py::array& pred, const py::array& target, py::object grad,
                               int reduction) {
  Reduction red = to_reduction(reduction);
  const float* pred_data = input<float>(pred, "pred");
  const float* target_data = input<float>(target, "target", pred.size());
  float* grad_data = optional_grad(grad, pred.size());
  py::gil_scoped_release release;
  return Loss(pred_data, target_data, grad_data, pred.size(), red);
}

template <class Label>
static double softmax_cross_entropy_typed(const float* logits, const py::array& labels, float* grad,
                                          int64_t rows, int64_t classes, Reduction reduction) {
  const Label* label_data = input<Label>(labels, "labels", rows);
  py::gil_scoped_release release;
  return cpu::softmax_cross_entropy_loss(logits, label_data, grad, rows, classes, reduction);
}

static double softmax_cross_entropy(const py::array& logits, const py::array& labels, py::object grad,
                                    int reduction) {
  Reduction red = to_reduction(reduction);
  require(logits.ndim() == 2, "softmax_cross_entropy: logits must be 2-D");
  int64_t rows = dim(logits, 0), classes = dim(logits, 1);
  require(classes > 0, "softmax_cross_entropy: logits has no classes");
  const float* logit_data = input<float>(logits, "logits");
  float* grad_data = optional_grad(grad, logits.size());
  if (has_dtype<int32_t>(labels)) {
    return softmax_cross_entropy_typed<int32_t>(logit_data, labels, grad_data, rows, classes, red);
  }
  return softmax_cross_entropy_typed<int64_t>(logit_data, labels, grad_data, rows, classes, red);
}

void bind_losses(py::module_& m) {
  m.def("mse_loss", &elementwise_loss<cpu::mse_loss>, py::arg("pred"), py::arg("target"), py::arg("grad"),
        py::arg("reduction"));
  m.def("binary_cross_entropy_loss", &elementwise_loss<cpu::binary_cross_entropy_loss>, py::arg("logits"),
        py::arg("target"), py::arg("grad"), py::arg("reduction"));
  m.def("softmax_cross_entropy_loss", &softmax_cross_entropy, py::arg("logits"), py::arg("labels"),
        py::arg("grad"), py::arg("reduction"));
}

}  // namespace fusedtrain::bindings
