// Bindings of the fused optimizer steps on flat float32 buffers (updated in place).
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

static void sgd_step(py::array& param, const py::array& grad, py::object velocity, float lr, float momentum,
                     bool nesterov, float weight_decay) {
  int64_t n = param.size();
  float* param_data = output<float>(param, "param");
  const float* grad_data = input<float>(grad, "grad", n);
  float* velocity_data = nullptr;
  if (!velocity.is_none()) {
    py::array velocity_array = velocity.cast<py::array>();
    velocity_data = output<float>(velocity_array, "velocity", n);
  }
  require(momentum == 0.0f || velocity_data, "sgd_step: momentum needs a velocity buffer");
  py::gil_scoped_release release;
  cpu::sgd_step(param_data, grad_data, velocity_data, n, lr, momentum, nesterov, weight_decay);
}

static void adam_step(py::array& param, const py::array& grad, py::array& m, py::array& v, int64_t step,
                      float lr, float beta1, float beta2, float eps, float weight_decay, bool decoupled) {
  int64_t n = param.size();
  float* param_data = output<float>(param, "param");
  const float* grad_data = input<float>(grad, "grad", n);
  float* m_data = output<float>(m, "m", n);
  float* v_data = output<float>(v, "v", n);
  require(step >= 1, "adam_step: step counts from 1");
  py::gil_scoped_release release;
  cpu::adam_step(param_data, grad_data, m_data, v_data, n, step, lr, beta1, beta2, eps, weight_decay,
                 decoupled);
}

static void rmsprop_step(py::array& param, const py::array& grad, py::array& square_avg, float lr,
                         float alpha, float eps, float weight_decay) {
  int64_t n = param.size();
  float* param_data = output<float>(param, "param");
  const float* grad_data = input<float>(grad, "grad", n);
  float* square_data = output<float>(square_avg, "square_avg", n);
  py::gil_scoped_release release;
  cpu::rmsprop_step(param_data, grad_data, square_data, n, lr, alpha, eps, weight_decay);
}

void bind_optimizers(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("param"), py::arg("grad"), py::arg("velocity"), py::arg("lr"),
        py::arg("momentum"), py::arg("nesterov"), py::arg("weight_decay"));
  m.def("adam_step", &adam_step, py::arg("param"), py::arg("grad"), py::arg("m"), py::arg("v"),
        py::arg("step"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("decoupled"));
  m.def("rmsprop_step", &rmsprop_step, py::arg("param"), py::arg("grad"), py::arg("square_avg"),
        py::arg("lr"), py::arg("alpha"), py::arg("eps"), py::arg("weight_decay"));
}

}  // namespace fusedtrain::bindings
