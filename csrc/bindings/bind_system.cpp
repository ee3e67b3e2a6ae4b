// Build and runtime facts (SIMD path, threads) and the thread-count controls.
#include "bindings/bindings.h"
#include "cpu/simd.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

namespace py = pybind11;

void bind_system(py::module_& m) {
  m.def("simd_path", &cpu::simd_path, "The CPU kernels' instruction-set path: 'avx2+fma' or 'portable'.");
  m.def("simd_available", &cpu::simd_available, py::arg("path"));
  m.def("set_simd_path", &cpu::set_simd_path, py::arg("path"));
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("threads"));
  m.attr("avx2_compiled") = py::bool_(FT_HAVE_AVX2 != 0);
}

}  // namespace fusedtrain::bindings
