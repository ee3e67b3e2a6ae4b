// The CPU kernels' thread count, and what parallel regions learn of the cores they get
// (defined in dispatch.cpp, compiled once; used by every instruction-set build).
#pragma once
#include <cstdint>

namespace fusedtrain::cpu {
// The process-wide thread count of fusedtrain::cpu::set_num_threads.
// Kernels cut their work by it, so that their results depend on it and on nothing else.
int kernel_threads();
// The threads to run a region of `chunks` chunks on now: `chunks`, or 1 for a short while after
// parallel regions found the cores taken (see RegionWatch in cpu/parallel.h). The chunks and their results stay
// the same either way.
int running_threads(int chunks);
// Called by every RegionWatch: whether its region was late.
void note_region(bool late);
// A monotonic clock in nanoseconds.
int64_t steady_ns();
}  // namespace fusedtrain::cpu
