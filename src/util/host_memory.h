// How much host memory a process can still take without being killed by the OOM killer: the
// kernel's MemAvailable estimate. Checked before large allocations, because on Linux malloc
// succeeds for almost any size and the failure only comes, as a kill, when pages are touched.
#pragma once
#include <cstddef>

namespace mamba {

// Bytes; SIZE_MAX when the kernel does not say.
size_t available_host_memory();

// The most host memory this process has held resident so far (the kernel's VmHWM), in bytes;
// 0 when the kernel does not say.
size_t peak_resident_memory();

}  // namespace mamba
