// Build and runtime facts (SIMD path, threads) and the thread-count controls.
#include <utility>

#include "bindings/arrays.h"
#include "bindings/bindings.h"
#include "cpu/simd.h"
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

// The bytes [first, last) an array's elements span (first == last when it has none): the bounds
// numpy.may_share_memory compares by default.
static std::pair<const char*, const char*> byte_span(const py::array& array) {
  const char* base = static_cast<const char*>(array.data());
  py::ssize_t low = 0, high = 0;
  for (py::ssize_t axis = 0; axis < array.ndim(); ++axis) {
    py::ssize_t extent = array.shape(axis);
    if (extent == 0) return {base, base};
    py::ssize_t reach = (extent - 1) * array.strides(axis);
    (reach < 0 ? low : high) += reach;
  }
  return {base + low, base + high + array.itemsize()};
}

// 0 when two NumPy arrays' element bounds are disjoint (or one is empty), 2 when the arrays
// are the same elements (same address, shape, strides and item size), 1 for any other overlap.
static int overlap(const py::array& first, const py::array& second) {
  auto [first_begin, first_end] = byte_span(first);
  auto [second_begin, second_end] = byte_span(second);
  if (first_begin == first_end || second_begin == second_end || first_end <= second_begin ||
      second_end <= first_begin) {
    return 0;
  }
  bool same = first.data() == second.data() && first.ndim() == second.ndim() &&
              first.itemsize() == second.itemsize();
  for (py::ssize_t axis = 0; same && axis < first.ndim(); ++axis) {
    same = first.shape(axis) == second.shape(axis) && first.strides(axis) == second.strides(axis);
  }
  return same ? 2 : 1;
}

void bind_system(py::module_& m) {
  m.def("simd_path", &cpu::simd_path, "The CPU kernels' instruction-set path: 'avx2+fma' or 'portable'.");
  m.def("simd_available", &cpu::simd_available, py::arg("path"));
  m.def("set_simd_path", &cpu::set_simd_path, py::arg("path"));
  m.def("get_num_threads", &cpu::get_num_threads);
  m.def("set_num_threads", &cpu::set_num_threads, py::arg("threads"));
  m.def("overlap", &overlap, py::arg("first"), py::arg("second"));
  m.def("fma_probe", &fma_probe, py::arg("rounds"));
  m.def("triad_probe", &triad_probe, py::arg("a"), py::arg("b"), py::arg("c"), py::arg("scalar"));
  m.attr("avx2_compiled") = py::bool_(FT_HAVE_AVX2 != 0);
}

}  // namespace fusedtrain::bindings
