// Array checks for the bindings. fusedtrain.ops validates every argument with messages that
// name it; these checks are the last line that keeps a direct call into fusedtrain._C from
// crashing or reading and writing out of bounds: the right dtype, C-contiguous, aligned to the
// item size, the expected size, writeable.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <utility>

namespace fusedtrain::bindings {

namespace py = pybind11;

template <class T>
inline bool has_dtype(const py::array& array) {
  char kind = array.dtype().kind();
  bool kind_ok = std::is_floating_point_v<T> ? kind == 'f'
                 : std::is_signed_v<T>       ? kind == 'i'
                                             : (kind == 'u' || kind == 'b');
  return kind_ok && array.itemsize() == static_cast<py::ssize_t>(sizeof(T));
}

template <class T>
inline void check_array(const py::array& array, const char* name, int64_t size) {
  if (!has_dtype<T>(array)) {
    throw py::type_error(std::string(name) + ": expected " + py::str(py::dtype::of<T>()).cast<std::string>() +
                         ", got " + py::str(array.dtype()).cast<std::string>());
  }
  if (!(array.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  }
  if (reinterpret_cast<uintptr_t>(array.data()) % alignof(T) != 0) {
    throw py::value_error(std::string(name) + ": expected an array aligned to its " + std::to_string(sizeof(T)) +
                          "-byte items");
  }
  if (size >= 0 && array.size() != size) {
    throw py::value_error(std::string(name) + ": expected " + std::to_string(size) + " elements, got " +
                          std::to_string(array.size()));
  }
}

// Read-only data of an array of T with `size` elements (size < 0: any size).
template <class T>
inline const T* input(const py::array& array, const char* name, int64_t size = -1) {
  check_array<T>(array, name, size);
  return static_cast<const T*>(array.data());
}

// Writeable data of an array of T with `size` elements (size < 0: any size).
template <class T>
inline T* output(py::array& array, const char* name, int64_t size = -1) {
  check_array<T>(array, name, size);
  if (!array.writeable()) throw py::value_error(std::string(name) + ": the array is read-only");
  return static_cast<T*>(array.mutable_data());
}

// Optional read-only input: null for None.
template <class T>
inline const T* optional_input(const py::object& object, const char* name, int64_t size) {
  if (object.is_none()) return nullptr;
  return input<T>(object.cast<py::array>(), name, size);
}

// The bytes [first, last) an array's elements span (first == last when it has none): the bounds
// numpy.may_share_memory compares by default.
inline std::pair<const char*, const char*> byte_span(const py::array& array) {
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
inline int overlap(const py::array& first, const py::array& second) {
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

inline int64_t dim(const py::array& array, int axis) { return static_cast<int64_t>(array.shape(axis)); }

inline void require(bool condition, const std::string& message) {
  if (!condition) throw py::value_error(message);
}

}  // namespace fusedtrain::bindings
