// The linear layer's forward for a few rows (decoding: one token per sequence, T <= 16), in bf16
// with fp32 accumulation: out[t, o] = sum_i inp[t, i] * weight[o, i], the layout of gemm.h.
// cuBLASLt tiles such a problem as if T were large: a few wide tiles, a few busy SMs, and the
// weights (the whole cost: they are read once per token) stream in slowly. Here every SM reads
// weight rows at full width instead, and all T rows are multiplied while each weight is in
// registers, so the weights are read once whatever T.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mamba::cuda {

constexpr int64_t kSkinnyMaxRows = 16;

// True when skinny_linear_forward takes the problem: 1 <= T <= kSkinnyMaxRows, and the weight's
// and the input's rows start on 16-byte boundaries (in_dim and ld_inp multiples of 8, aligned
// pointers), since rows are read 16 bytes at a time. Otherwise use the general GEMM.
bool skinny_linear_fits(const void* inp, int64_t ld_inp, const void* weight, int64_t T, int in_dim,
                        int out_dim);

// Out is bf16 or float. sm_count: the device's multiprocessors, to size the launch. clusters: the
// device launches thread-block clusters (compute capability 9.0 or more), so that blocks may share
// in_dim. Needs a device of compute capability 8.0 or more (bf16 tensor-core MMA).
template <typename Out>
void skinny_linear_forward(Out* out, int64_t ld_out, const __nv_bfloat16* inp, int64_t ld_inp,
                           const __nv_bfloat16* weight, int64_t T, int in_dim, int out_dim,
                           int sm_count, bool clusters, cudaStream_t stream);

}  // namespace mamba::cuda
