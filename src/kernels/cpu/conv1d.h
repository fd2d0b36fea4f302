// Causal depthwise conv1d over time + bias + SiLU, per channel d, width K (d_conv):
//   pre[b, t, d] = bias[d] + sum_{k=0..K-1} weight[d, k] * x[b, t + k - (K-1), d]   (x before t=0
//   is 0) out[b, t, d] = silu(pre[b, t, d])
// Token-major: x rows have stride ld_x (x may be the first half of the in_proj output), out rows
// are contiguous [T, D]. weight is PyTorch's conv1d.weight [D, 1, K] viewed as [D, K].
// Backward recomputes pre from x (cheaper than saving it), writes dx (overwrite, stride ld_x) and
// accumulates dweight, dbias.
#pragma once
#include <cstdint>

namespace mamba::cpu {

void conv1d_silu_forward(float* out, const float* x, int64_t ld_x, const float* weight,
                         const float* bias, int batch, int64_t seqlen, int D, int K);
void conv1d_silu_backward(float* dx, float* dweight, float* dbias, const float* dout,
                          const float* x, int64_t ld_x, const float* weight, const float* bias,
                          int batch, int64_t seqlen, int D, int K);

}  // namespace mamba::cpu
