#include "kernels/cpu/rmsnorm.h"

#include <cmath>

#include "kernels/cpu/channel_blocks.h"

namespace mamba::cpu {

void residual_rmsnorm_forward(float* residual_out, float* normed, float* rstd, const float* hidden,
                              const float* residual_in, const float* weight, int64_t T, int C,
                              float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* h = hidden + t * C;
    auto residual = [&](int c) { return residual_in ? h[c] + residual_in[t * C + c] : h[c]; };
    // The mean of squares is accumulated in double: this is the oracle other backends are
    // compared against, and C reaches the thousands.
    double ss = 0.0;
    for (int c = 0; c < C; ++c) {
      const float r = residual(c);
      if (residual_out) residual_out[t * C + c] = r;
      ss += static_cast<double>(r) * r;
    }
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / C + eps));
    rstd[t] = inv;
    float* out = normed + t * C;
    // residual_out may be residual_in itself (an update in place): read back what was written.
    for (int c = 0; c < C; ++c) {
      out[c] = (residual_out ? residual_out[t * C + c] : residual(c)) * inv * weight[c];
    }
  }
}

void rmsnorm_backward(float* dresidual, float* dweight, const float* dnormed,
                      const float* residual_out, const float* rstd, const float* weight, int64_t T,
                      int C) {
  // d(x_c * r * w_c)/dx_j = r * w_c * [c == j] - x_c * w_c * x_j * r^3 / C, r = rstd.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* x = residual_out + t * C;
    const float* g = dnormed + t * C;
    const float r = rstd[t];
    double dot = 0.0;
    for (int c = 0; c < C; ++c) dot += static_cast<double>(g[c]) * weight[c] * x[c];
    const float k = static_cast<float>(dot * r * r * r / C);
    float* dx = dresidual + t * C;
    for (int c = 0; c < C; ++c) dx[c] += r * weight[c] * g[c] - k * x[c];
  }

  // dweight sums over tokens.
  for_each_channel_block(C, 1, [&](int64_t, int, int c0, int c1) {
    double acc[kChannelBlock] = {};
    for (int64_t t = 0; t < T; ++t) {
      const float* x = residual_out + t * C;
      const float* g = dnormed + t * C;
      const float r = rstd[t];
      for (int c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(g[c]) * x[c] * r;
    }
    for (int c = c0; c < c1; ++c) dweight[c] += static_cast<float>(acc[c - c0]);
  });
}

}  // namespace mamba::cpu
