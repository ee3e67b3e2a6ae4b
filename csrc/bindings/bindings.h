// One registration function per kernel family; module.cpp calls them all.
#pragma once
#include <pybind11/pybind11.h>

namespace fusedtrain::bindings {

void bind_system(pybind11::module_& m);
void bind_gemm(pybind11::module_& m);
void bind_elementwise(pybind11::module_& m);
void bind_losses(pybind11::module_& m);
void bind_optimizers(pybind11::module_& m);
void bind_dropout(pybind11::module_& m);
void bind_cuda(pybind11::module_& m);

}  // namespace fusedtrain::bindings
