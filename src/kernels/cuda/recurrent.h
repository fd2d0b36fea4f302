// Recurrent (generation) mode on the GPU: the math and layouts of kernels/cpu/recurrent.h, with
// activations in T (float or bf16) and the states fp32. Work is queued on `stream`; nothing
// allocates or synchronizes, so a step can be recorded in a CUDA graph.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/ops.h"

namespace mamba::cuda {

// K (d_conv) is 2, 3 or 4.
template <typename T>
void conv1d_silu_step(T* out, float* state, const T* x, int64_t ld_x, const float* weight,
                      const float* bias, int batch, int D, int K, cudaStream_t stream);

// d_state is 16. Reads every activation of `in` as T.
template <typename T>
void selective_scan_step(const ScanShape& s, const ScanInputs& in, T* out, float* ssm_state,
                         cudaStream_t stream);

void argmax_rows(const ArgmaxRows& op, cudaStream_t stream);

}  // namespace mamba::cuda
