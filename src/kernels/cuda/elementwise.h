// Small fp32 elementwise ops and reductions of the CUDA backend (CPU twins: CpuBackend's loops and
// kernels/cpu/adamw.h's sum_of_squares). All pointers are device pointers; work is
// queued on `stream`.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

namespace mamba::cuda {

// dst[i] = bf16(src[i]), rounded to nearest even.
void to_bf16(__nv_bfloat16* dst, const float* src, int64_t n, cudaStream_t stream);
// dst[i] = float(src[i]).
void from_bf16(float* dst, const __nv_bfloat16* src, int64_t n, cudaStream_t stream);
// out[i] = -exp(in[i]) (A = -exp(A_log)).
void negative_exp(float* out, const float* in, int64_t n, cudaStream_t stream);
// dst[i] += a[i] * b[i].
void mul_accumulate(float* dst, const float* a, const float* b, int64_t n, cudaStream_t stream);

// *result = the sum of x[i]^2 over the elements of spans[0..count) (host memory), as
// kernels/cpu/adamw.h defines it: each span's sum accumulated in double with a fixed partition of
// its elements and a fixed reduction tree (so equal inputs give bit-identical sums, and a span
// sums as a buffer of its length would), the spans' sums added in their order. One pass for all
// spans; nothing waits for the device. `workspace` holds sum_of_squares_workspace_bytes().
size_t sum_of_squares_workspace_bytes(const Span* spans, int count);
void sum_of_squares(double* result, const float* x, const Span* spans, int count, void* workspace,
                    cudaStream_t stream);

}  // namespace mamba::cuda
