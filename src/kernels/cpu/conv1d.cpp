#include "kernels/cpu/conv1d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/channel_blocks.h"

namespace mamba::cpu {

namespace {

// pre[b, s, d] for all d at once: the bias plus the taps that fall inside the sequence.
void conv_pre_row(float* pre, const float* x, int64_t ld_x, const float* weight, const float* bias,
                  int64_t b_row0, int64_t s, int D, int K) {
  for (int d = 0; d < D; ++d) pre[d] = bias[d];
  for (int k = std::max<int64_t>(0, K - 1 - s); k < K; ++k) {
    const float* xr = x + (b_row0 + s + k - (K - 1)) * ld_x;
    for (int d = 0; d < D; ++d) pre[d] += weight[d * K + k] * xr[d];
  }
}

}  // namespace

void conv1d_silu_forward(float* out, const float* x, int64_t ld_x, const float* weight,
                         const float* bias, int batch, int64_t seqlen, int D, int K) {
  const int64_t T = batch * seqlen;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * D;
    const int64_t s = t % seqlen;
    conv_pre_row(o, x, ld_x, weight, bias, t - s, s, D, K);
    for (int d = 0; d < D; ++d) o[d] = o[d] / (1.0f + std::exp(-o[d]));
  }
}

void conv1d_silu_backward(float* dx, float* dweight, float* dbias, const float* dout,
                          const float* x, int64_t ld_x, const float* weight, const float* bias,
                          int batch, int64_t seqlen, int D, int K) {
  const int64_t T = batch * seqlen;
  // dpre is needed K times per element (by dx at K different times), so it is materialised once.
  std::vector<float> dpre(T * D);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* g = dpre.data() + t * D;
    const int64_t s = t % seqlen;
    conv_pre_row(g, x, ld_x, weight, bias, t - s, s, D, K);
    const float* go = dout + t * D;
    for (int d = 0; d < D; ++d) {
      const float sig = 1.0f / (1.0f + std::exp(-g[d]));
      g[d] = go[d] * sig * (1.0f + g[d] * (1.0f - sig));
    }
  }

  // x[s] feeds pre[s + (K-1) - k] through tap k.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t s = t % seqlen;
    float* dxr = dx + t * ld_x;
    std::fill(dxr, dxr + D, 0.0f);
    for (int k = 0; k < K; ++k) {
      const int64_t s_out = s + (K - 1) - k;
      if (s_out >= seqlen) continue;
      const float* g = dpre.data() + (t - s + s_out) * D;
      for (int d = 0; d < D; ++d) dxr[d] += weight[d * K + k] * g[d];
    }
  }

  // dweight and dbias sum over tokens.
  for_each_channel_block(D, 1, [&](int64_t, int, int d0, int d1) {
    std::vector<double> acc_w(static_cast<size_t>(kChannelBlock) * K, 0.0);
    double acc_b[kChannelBlock] = {};
    for (int64_t t = 0; t < T; ++t) {
      const int64_t s = t % seqlen;
      const float* g = dpre.data() + t * D;
      for (int d = d0; d < d1; ++d) acc_b[d - d0] += g[d];
      for (int k = std::max<int64_t>(0, K - 1 - s); k < K; ++k) {
        const float* xr = x + (t + k - (K - 1)) * ld_x;
        for (int d = d0; d < d1; ++d) {
          acc_w[(d - d0) * K + k] += static_cast<double>(g[d]) * xr[d];
        }
      }
    }
    for (int d = d0; d < d1; ++d) {
      dbias[d] += static_cast<float>(acc_b[d - d0]);
      for (int k = 0; k < K; ++k) dweight[d * K + k] += static_cast<float>(acc_w[(d - d0) * K + k]);
    }
  });
}

}  // namespace mamba::cpu
