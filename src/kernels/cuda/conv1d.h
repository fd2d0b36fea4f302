// Causal depthwise conv1d + bias + SiLU on the GPU: the math of kernels/cpu/conv1d.h. x / dx rows
// have stride ld_x, out / dout rows are contiguous [T, D], all in the activation type T (float or
// bf16); weight [D, K], bias [D] and their gradients are fp32. K (d_conv) is 2, 3 or 4.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace mamba::cuda {

template <typename T>
void conv1d_silu_forward(T* out, const T* x, int64_t ld_x, const float* weight, const float* bias,
                         int batch, int64_t seqlen, int D, int K, cudaStream_t stream);

// A low-rank term of the backward's output gradient (ops.h, LowRankGrad): a [T, rank] in rows of
// stride ld_a, weight [rank, D]. rank 0: none.
template <typename T>
struct ConvLowRank {
  const T* a = nullptr;
  int64_t ld_a = 0;
  const T* weight = nullptr;
  int rank = 0;
};
constexpr int kConvMaxRank = 96;

// Whether the bf16 backward takes a low-rank term: rank a multiple of 16 up to kConvMaxRank; D,
// ld_x and ld_a multiples of 8; `tensors` (dx, dout, x, a, weight) 16-byte aligned.
bool conv1d_lowrank_fits(int D, int64_t ld_x, int rank, int64_t ld_a,
                         std::initializer_list<const void*> tensors);

// dx is overwritten and must not overlap dout or x; dweight and dbias accumulate through
// per-tile partial sums in `workspace` (conv1d_backward_workspace_bytes) added in a fixed order:
// bit-identical from run to run. With lowrank (bf16, where conv1d_lowrank_fits) the output
// gradient is dout + a x weight, rounded to bf16.
size_t conv1d_backward_workspace_bytes(int batch, int64_t seqlen, int D, int K);
template <typename T>
void conv1d_silu_backward(T* dx, float* dweight, float* dbias, const T* dout, const T* x,
                          int64_t ld_x, const float* weight, const float* bias, int batch,
                          int64_t seqlen, int D, int K, const ConvLowRank<T>& lowrank,
                          void* workspace, cudaStream_t stream);

}  // namespace mamba::cuda
