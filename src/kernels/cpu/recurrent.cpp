#include "kernels/cpu/recurrent.h"

#include <cmath>

namespace mamba::cpu {

namespace {

float silu(float x) {
  return x / (1.0f + std::exp(-x));
}
// log1p(exp(x)), switching to x where exp would overflow (the same cut-off as the scan kernels).
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

}  // namespace

void conv1d_silu_step(float* out, float* conv_state, const float* x, const float* weight,
                      const float* bias, int D, int K) {
  for (int d = 0; d < D; ++d) {
    float* state = conv_state + d * (K - 1);
    const float* w = weight + d * K;
    float acc = bias[d];
    for (int k = 0; k < K - 1; ++k) acc += w[k] * state[k];
    acc += w[K - 1] * x[d];
    for (int k = 0; k + 1 < K - 1; ++k) state[k] = state[k + 1];
    if (K > 1) state[K - 2] = x[d];
    out[d] = silu(acc);
  }
}

void selective_scan_step(float* out, float* ssm_state, const float* u, const float* delta,
                         const float* A, const float* B, const float* C, const float* D,
                         const float* delta_bias, const float* z, int d_inner, int d_state) {
  for (int d = 0; d < d_inner; ++d) {
    const float dt = softplus(delta[d] + delta_bias[d]);
    float* h = ssm_state + d * d_state;
    float y = 0.0f;
    for (int n = 0; n < d_state; ++n) {
      h[n] = std::exp(dt * A[d * d_state + n]) * h[n] + dt * B[n] * u[d];
      y += C[n] * h[n];
    }
    y += D[d] * u[d];
    out[d] = y * silu(z[d]);
  }
}

}  // namespace mamba::cpu
