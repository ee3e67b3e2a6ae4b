// Build and runtime facts (SIMD path, threads) and the thread-count controls.
#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "cpu/simd.h"
#include "cpu/threads.h"
#include "fusedtrain/cpu.h"

namespace fusedtrain::bindings {

namespace py = pybind11;

static double fma_probe(int64_t rounds) {
  py::gil_scoped_release release;
  return cpu::fma_probe(rounds);
}

static void triad_probe(py::array& a, const py::array& b, const py::array& c, float scalar) {
  float* a_data = output<float>(a, "a");
  const float* b_data = input<float>(b, "b", a.size());
  const float* c_data = input<float>(c, "c", a.size());
  py::gil_scoped_release release;
  cpu::triad_probe(a_data, b_data, c_data, scalar, a.size());
}

void bind_system(py::module_& m) {
  m.def("simd_path", &cpu::simd_path, "The CPU kernels' instruction-set path: 'avx512', 'avx2+fma' or 'portable'.");
  m.def("simd_available", &cpu::simd_available, py::arg("path"));
  m.def("set_simd_path", &cpu::set_simd_path, py::arg("path"));
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("threads"));
  m.def("overlap", &overlap, py::arg("first"), py::arg("second"),
        "0 when two NumPy arrays' memory is disjoint, 2 when they are the same elements, 1 otherwise.");
  m.def("fma_probe", &fma_probe, py::arg("rounds"));
  m.def("triad_probe", &triad_probe, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("scalar"));
  // For the tests of cpu/parallel.h's fallback to one thread on contended cores.
  m.def("_running_threads", &cpu::running_threads, py::arg("chunks"));
  m.def("_note_region", &cpu::note_region, py::arg("late"));
  m.attr("avx2_compiled") = py::bool_(FT_HAVE_AVX2 != 0);
  m.attr("avx512_compiled") = py::bool_(FT_HAVE_AVX512 != 0);
}

}  // namespace fusedtrain::bindings
