// Fills one device tensor with its initialisation (InitFill, kernels/ops.h), queued on `stream`.
// The value of each element is kernels/init_element.h's, the same function the CPU twin
// (kernels/cpu/init_fill.h) runs, so the two agree bit for bit.
#pragma once
#include <cuda_runtime_api.h>

#include "kernels/ops.h"

namespace mamba::cuda {

void init_fill(const InitFill& f, cudaStream_t stream);

}  // namespace mamba::cuda
