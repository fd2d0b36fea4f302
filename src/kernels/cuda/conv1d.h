// Causal depthwise conv1d + bias + SiLU on the GPU: the math of kernels/cpu/conv1d.h. x / dx rows
// have stride ld_x, out / dout rows are contiguous [T, D], all in the activation type T (float or
// bf16); weight [D, K], bias [D] and their gradients are fp32. K (d_conv) is 2, 3 or 4.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mamba::cuda {

template <typename T>
void conv1d_silu_forward(T* out, const T* x, int64_t ld_x, const float* weight, const float* bias,
                         int batch, int64_t seqlen, int D, int K, cudaStream_t stream);

// dx is overwritten and must not overlap dout or x; dweight and dbias accumulate through
// per-tile partial sums in `workspace` (conv1d_backward_workspace_bytes) added in a fixed order:
// bit-identical from run to run.
size_t conv1d_backward_workspace_bytes(int batch, int64_t seqlen, int D, int K);
template <typename T>
void conv1d_silu_backward(T* dx, float* dweight, float* dbias, const T* dout, const T* x,
                          int64_t ld_x, const float* weight, const float* bias, int batch,
                          int64_t seqlen, int D, int K, void* workspace, cudaStream_t stream);

}  // namespace mamba::cuda
