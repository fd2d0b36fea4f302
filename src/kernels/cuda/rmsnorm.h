// Residual add + RMSNorm on the GPU: the math of kernels/cpu/rmsnorm.h. Token-major [T, C]; the
// residual stream, rstd, weight and the gradients dresidual, dweight are fp32; normed / dnormed are
// in the activation type T (float or bf16).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mamba::cuda {

template <typename T>
void residual_rmsnorm_forward(float* residual_out, T* normed, float* rstd, const float* hidden,
                              const float* residual_in, const float* weight, int64_t rows, int C,
                              float eps, cudaStream_t stream);

// dresidual += d(normed)/d(residual_out)^T dnormed, and its copy in T into dresidual_act (when
// not null and not dresidual itself); dweight += sum_t dnormed * residual_out * rstd through
// per-tile partial sums in `workspace` (rmsnorm_backward_workspace_bytes) added in a fixed order,
// so results are bit-identical from run to run.
size_t rmsnorm_backward_workspace_bytes(int64_t rows, int C);
template <typename T>
void rmsnorm_backward(float* dresidual, T* dresidual_act, float* dweight, const T* dnormed,
                      const float* residual_out, const float* rstd, const float* weight,
                      int64_t rows, int C, void* workspace, cudaStream_t stream);

}  // namespace mamba::cuda
