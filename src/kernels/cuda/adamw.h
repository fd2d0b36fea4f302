// AdamW on the GPU: the math of kernels/cpu/adamw.h (PyTorch semantics), fp32 throughout, over n
// contiguous elements of the flat parameter / gradient / moment buffers.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/ops.h"

namespace mamba::cuda {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, cudaStream_t stream);

}  // namespace mamba::cuda
