// fusedtrain._C: the compiled kernels. The public API is fusedtrain.ops, which validates its
// arguments and calls these functions.
#include "bindings/bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "fusedtrain compiled kernels (use fusedtrain.ops)";
  fusedtrain::bindings::bind_system(m);
  fusedtrain::bindings::bind_gemm(m);
  fusedtrain::bindings::bind_elementwise(m);
  fusedtrain::bindings::bind_losses(m);
  fusedtrain::bindings::bind_optimizers(m);
  fusedtrain::bindings::bind_dropout(m);
  fusedtrain::bindings::bind_cuda(m);
}
