// Residual add + RMSNorm, token-major [T, C], fp32:
//   residual_out = hidden + residual_in        (residual_in may be null: residual_out = hidden;
//                                               residual_out may be null: not written)
//   rstd[t]      = 1 / sqrt(mean_c(residual_out[t, c]^2) + eps)
//   normed[t, c] = residual_out[t, c] * rstd[t] * weight[c]
// Backward takes dnormed and returns the gradient of residual_out into dresidual, *added* to what
// dresidual already holds (the gradient arriving through the residual stream). Because the add
// has slope 1 in both inputs, this one buffer is the gradient of hidden and of residual_in.
// dweight accumulates.
#pragma once
#include <cstdint>

namespace mamba::cpu {

void residual_rmsnorm_forward(float* residual_out, float* normed, float* rstd, const float* hidden,
                              const float* residual_in, const float* weight, int64_t T, int C,
                              float eps);
void rmsnorm_backward(float* dresidual, float* dweight, const float* dnormed,
                      const float* residual_out, const float* rstd, const float* weight, int64_t T,
                      int C);

}  // namespace mamba::cpu
