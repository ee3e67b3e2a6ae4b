// fusedtrain's CPU kernels as a C++ API: plain pointers and sizes, no Python types.
// Each call picks the AVX-512, AVX2/FMA or portable implementation at run time and runs on the
// OpenMP thread pool. Installed with the Python package: link the CMake target
// fusedtrain::kernels (find_package(fusedtrain CONFIG), see fusedtrain.get_cmake_dir()).
//
// Errors. No function here aborts, exits or prints. Before any work starts, each entry point
// checks what its kernel cannot, and throws std::invalid_argument, with a message of the form
// "fusedtrain::cpu::<function>: <argument> ...", when
//   - a size (n, m, k, rows, cols, classes) is negative; classes is < 1; rows > 0 with
//     cols == 0 for argmax_rows and count_correct (no column to take the argmax of);
//   - a pointer the call reads or writes is null (a pointer may be null when the call touches
//     none of its elements, e.g. n == 0; gemm's bias and the losses' grad are always optional;
//     sgd_step's velocity is needed only with momentum != 0);
//   - a leading dimension is smaller than the columns it strides over (gemm: lda, ldb, ldc);
//   - an Activation or Reduction holds a value outside its enumerators;
//   - softmax_cross_entropy_loss or count_correct gets a label outside [0, classes);
//   - gather_rows gets an index outside [0, source_rows);
//   - adam_step gets step < 1; dropout gets a rate outside [0, 1) (or NaN);
//   - set_num_threads gets threads < 1;
//   - an array's rows x row length (columns or leading dimension) overflows int64_t.
// On a throw nothing has been written. gemm throws std::bad_alloc when its per-thread packing
// buffers (about 3 MiB per thread, allocated once) cannot be allocated; C is then unspecified.
// What the checks cannot see is the caller's to get
// right: that each pointer addresses as many elements as the sizes say and that outputs do not
// overlap inputs except where a function allows it. Values are never checked: NaN and
// infinities propagate through the arithmetic as IEEE 754 says.
#pragma once
#include <cstdint>

#include "fusedtrain/types.h"

namespace fusedtrain::cpu {

#include "fusedtrain/cpu_kernels.inc"

// The instruction-set path the kernels use on this machine: "avx512", "avx2+fma" or "portable".
const char* simd_path();
// The kernels' OpenMP thread count: one count for the whole process, whichever thread calls a
// kernel; it starts at OpenMP's default (OMP_NUM_THREADS).
int get_num_threads();
void set_num_threads(int threads);

}  // namespace fusedtrain::cpu
