// The CUDA side of fusedtrain._C: whether it was compiled, what devices the runtime sees, and
// the kernels on device pointers (CuPy arrays' data pointers, validated in fusedtrain.ops).
#include <stdexcept>

#include "bindings/bindings.h"
#if FT_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace fusedtrain::bindings {

namespace py = pybind11;

void bind_cuda(py::module_& m) {
  m.attr("cuda_compiled") = py::bool_(FT_WITH_CUDA != 0);
#if FT_WITH_CUDA
  m.def("cuda_query", [] {
    cuda::DeviceReport report = cuda::query_devices();
    py::list names;
    for (int device = 0; device < report.device_count; ++device) {
      names.append(cuda::describe_device(device));
    }
    return py::dict(py::arg("device_count") = report.device_count, py::arg("error") = report.error,
                    py::arg("driver") = report.driver, py::arg("devices") = names);
  });
  m.def(
      "cuda_activation_forward",
      [](int activation, float param, std::uintptr_t x, std::uintptr_t y, int64_t n, std::uintptr_t stream) {
        py::gil_scoped_release release;
        cuda::activation_forward(static_cast<Activation>(activation), param, reinterpret_cast<const float*>(x),
                                 reinterpret_cast<float*>(y), n, stream);
      },
      py::arg("activation"), py::arg("param"), py::arg("x"), py::arg("out"), py::arg("n"), py::arg("stream"));
  m.def(
      "cuda_activation_backward",
      [](int activation, float param, std::uintptr_t grad_output, std::uintptr_t x, std::uintptr_t grad_input,
         int64_t n, std::uintptr_t stream) {
        py::gil_scoped_release release;
        cuda::activation_backward(static_cast<Activation>(activation), param,
                                  reinterpret_cast<const float*>(grad_output), reinterpret_cast<const float*>(x),
                                  reinterpret_cast<float*>(grad_input), n, stream);
      },
      py::arg("activation"), py::arg("param"), py::arg("grad_output"), py::arg("x"), py::arg("out"), py::arg("n"),
      py::arg("stream"));
#else
  m.def("cuda_query", [] {
    return py::dict(py::arg("device_count") = 0,
                    py::arg("error") = "fusedtrain was built without CUDA (no nvcc found at build time)",
                    py::arg("driver") = "", py::arg("devices") = py::list());
  });
#endif
}

}  // namespace fusedtrain::bindings
