#include "kernels/cpu/recurrent.h"

#include <cmath>

namespace mamba::cpu {

namespace {

float silu(float x) {
  return x / (1.0f + std::exp(-x));
}
// PyTorch's F.softplus (threshold 20), as in scan.cpp.
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

}  // namespace

void conv1d_silu_step(const Conv1dShape& s, const Conv1dStep& op) {
  const ActCast<float> f32{"conv1d_silu_step"};
  const float* x = f32(op.x, "x");
  float* out = f32(op.out, "out");
  const int D = s.D, K = s.K;
  for (int b = 0; b < s.batch; ++b) {
    for (int d = 0; d < D; ++d) {
      float* state = op.state + (int64_t(b) * D + d) * (K - 1);
      const float* w = op.weight + d * K;
      const float xd = x[b * s.ld_x + d];
      float acc = op.bias[d];
      for (int k = 0; k < K - 1; ++k) acc += w[k] * state[k];
      acc += w[K - 1] * xd;
      for (int k = 0; k + 1 < K - 1; ++k) state[k] = state[k + 1];
      if (K > 1) state[K - 2] = xd;
      out[int64_t(b) * D + d] = silu(acc);
    }
  }
}

void selective_scan_step(const ScanShape& s, const ScanInputs& in, Act out_act, float* ssm_state) {
  const ActCast<float> f32{"selective_scan_step"};
  const float *u = f32(in.u, "u"), *delta = f32(in.delta, "delta"), *B = f32(in.B, "B"),
              *C = f32(in.C, "C"), *z = f32(in.z, "z");
  float* out = f32(out_act, "out");
  const int Dn = s.d_inner, N = s.d_state;
  for (int b = 0; b < s.batch; ++b) {
    const float* Bb = B + b * s.ld_bc;
    const float* Cb = C + b * s.ld_bc;
    for (int d = 0; d < Dn; ++d) {
      const int64_t row = int64_t(b) * Dn + d;
      const float dt = softplus(delta[row] + in.delta_bias[d]);
      const float ud = u[row];
      float* h = ssm_state + row * N;
      float y = 0.0f;
      for (int n = 0; n < N; ++n) {
        h[n] = std::exp(dt * in.A[d * N + n]) * h[n] + dt * Bb[n] * ud;
        y += Cb[n] * h[n];
      }
      y += in.D[d] * ud;
      out[row] = y * silu(z[b * s.ld_z + d]);
    }
  }
}

void argmax_rows(const ArgmaxRows& op) {
  for (int r = 0; r < op.rows; ++r) {
    const float* x = op.x + r * op.ld;
    int best = 0;
    for (int i = 1; i < op.n; ++i) {
      if (x[i] > x[best]) best = i;
    }
    op.out[r] = best;
  }
}

}  // namespace mamba::cpu
