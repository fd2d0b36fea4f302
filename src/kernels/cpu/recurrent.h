// Recurrent (generation) mode of the conv and the scan: one new token per call, batch 1, with the
// per-layer state carried between calls. Same math as conv1d.h and scan.h at the last position.
//   conv_state [D, K-1]: the previous K-1 inputs of each channel, oldest first (zeros at start).
//   ssm_state  [D, N]:   h after the previous token (zeros at start).
#pragma once

namespace mamba::cpu {

// out[d] = silu(bias[d] + sum_k weight[d, k] * window[d, k]) with window = conv_state then x;
// then shifts x into conv_state.
void conv1d_silu_step(float* out, float* conv_state, const float* x, const float* weight,
                      const float* bias, int D, int K);

// h = exp(delta' A) h + delta' B u; out = (C . h + D u) * silu(z), delta' = softplus(delta + bias).
void selective_scan_step(float* out, float* ssm_state, const float* u, const float* delta,
                         const float* A, const float* B, const float* C, const float* D,
                         const float* delta_bias, const float* z, int d_inner, int d_state);

}  // namespace mamba::cpu
