#include "kernels/cpu/scan.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/channel_blocks.h"

namespace mamba::cpu {

namespace {

// PyTorch's F.softplus (threshold 20), which the reference uses.
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}
float softplus_grad(float x) {
  return x > 20.0f ? 1.0f : 1.0f / (1.0f + std::exp(-x));
}

float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

}  // namespace

void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out_act,
                            float* last_state) {
  const ActCast<float> f32{"selective_scan_forward"};
  const float *u = f32(in.u, "u"), *delta = f32(in.delta, "delta"), *B = f32(in.B, "B"),
              *C = f32(in.C, "C"), *z = f32(in.z, "z");
  const float *A = in.A, *D = in.D, *delta_bias = in.delta_bias;
  float* out = f32(out_act, "out");
  const int64_t L = s.seqlen;
  const int Dn = s.d_inner;
  const int N = s.d_state;
  const int64_t tasks = static_cast<int64_t>(s.batch) * Dn;
#pragma omp parallel
  {
    std::vector<float> h(N);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / Dn;
      const int d = static_cast<int>(task % Dn);
      const float* Ad = A + static_cast<int64_t>(d) * N;
      std::fill(h.begin(), h.end(), 0.0f);
      for (int64_t i = 0; i < L; ++i) {
        const int64_t t = b * L + i;
        const float dt = softplus(delta[t * Dn + d] + delta_bias[d]);
        const float ut = u[t * Dn + d];
        const float* Bt = B + t * s.ld_bc;
        const float* Ct = C + t * s.ld_bc;
        float y = D[d] * ut;
        for (int n = 0; n < N; ++n) {
          h[n] = std::exp(dt * Ad[n]) * h[n] + dt * Bt[n] * ut;
          y += Ct[n] * h[n];
        }
        const float zt = z[t * s.ld_z + d];
        out[t * Dn + d] = y * zt * sigmoid(zt);
      }
      std::copy(h.begin(), h.end(), last_state + task * N);
    }
  }
}

void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout_act,
                             const ScanGrads& grads) {
  const ActCast<float> f32{"selective_scan_backward"};
  const float *u = f32(in.u, "u"), *delta = f32(in.delta, "delta"), *B = f32(in.B, "B"),
              *C = f32(in.C, "C"), *z = f32(in.z, "z"), *dout = f32(dout_act, "dout");
  const float *A = in.A, *D = in.D, *delta_bias = in.delta_bias;
  float *du = f32(grads.du, "du"), *ddelta = f32(grads.ddelta, "ddelta"), *dB = f32(grads.dB, "dB"),
        *dC = f32(grads.dC, "dC"), *dz = f32(grads.dz, "dz");
  float* out = f32(grads.out, "out");  // null when not wanted
  float *dA = grads.dA, *dD = grads.dD, *ddelta_bias = grads.ddelta_bias;
  const int64_t L = s.seqlen;
  const int Dn = s.d_inner;
  const int N = s.d_state;
  // dB and dC sum over channels: each (batch, channel block) adds its channels into one partial
  // in channel order, and the partials are summed in block order.
  const int groups = channel_blocks(Dn);

  // Per (batch, block): [L, 2N] partial sums of dB (first N) and dC (last N).
  std::vector<float> part_bc(static_cast<size_t>(s.batch) * groups * L * 2 * N);
  // Per (batch, channel) partial sums over time, reduced over batch afterwards.
  std::vector<double> part_dA(static_cast<size_t>(s.batch) * Dn * N);
  std::vector<double> part_dD(static_cast<size_t>(s.batch) * Dn);
  std::vector<double> part_dbias(static_cast<size_t>(s.batch) * Dn);

  for_each_channel_block(Dn, s.batch, [&](int64_t b, int grp, int d_begin, int d_end) {
    // The states of one channel over the whole sequence, recomputed for the reverse pass.
    std::vector<float> hs(L * N);
    std::vector<float> g(N);  // dL/dh_t flowing back from later times
    std::vector<double> acc_dA(N);
    float* pbc = part_bc.data() + (b * groups + grp) * L * 2 * N;
    std::fill(pbc, pbc + L * 2 * N, 0.0f);
    for (int d = d_begin; d < d_end; ++d) {
      const float* Ad = A + static_cast<int64_t>(d) * N;
      for (int64_t i = 0; i < L; ++i) {
        const int64_t t = b * L + i;
        const float dt = softplus(delta[t * Dn + d] + delta_bias[d]);
        const float ut = u[t * Dn + d];
        const float* Bt = B + t * s.ld_bc;
        const float* prev = i > 0 ? hs.data() + (i - 1) * N : nullptr;
        float* cur = hs.data() + i * N;
        for (int n = 0; n < N; ++n) {
          cur[n] = std::exp(dt * Ad[n]) * (prev ? prev[n] : 0.0f) + dt * Bt[n] * ut;
        }
      }

      std::fill(g.begin(), g.end(), 0.0f);
      std::fill(acc_dA.begin(), acc_dA.end(), 0.0);
      double acc_dD = 0.0;
      double acc_dbias = 0.0;
      for (int64_t i = L - 1; i >= 0; --i) {
        const int64_t t = b * L + i;
        const float x = delta[t * Dn + d] + delta_bias[d];
        const float dt = softplus(x);
        const float ut = u[t * Dn + d];
        const float zt = z[t * s.ld_z + d];
        const float* Bt = B + t * s.ld_bc;
        const float* Ct = C + t * s.ld_bc;
        const float* cur = hs.data() + i * N;
        const float* prev = i > 0 ? hs.data() + (i - 1) * N : nullptr;

        float y = D[d] * ut;
        for (int n = 0; n < N; ++n) y += Ct[n] * cur[n];
        const float sz = sigmoid(zt);
        const float go = dout[t * Dn + d];
        dz[t * s.ld_z + d] = go * y * sz * (1.0f + zt * (1.0f - sz));
        if (out) out[t * Dn + d] = y * zt * sz;
        const float dy = go * zt * sz;
        acc_dD += static_cast<double>(dy) * ut;

        float du_t = dy * D[d];
        float ddt = 0.0f;
        float* pB = pbc + i * 2 * N;
        float* pC = pB + N;
        for (int n = 0; n < N; ++n) {
          const float gn = g[n] + dy * Ct[n];
          const float e = std::exp(dt * Ad[n]);
          const float hp = prev ? prev[n] : 0.0f;
          pC[n] += dy * cur[n];
          pB[n] += gn * dt * ut;
          ddt += gn * (hp * e * Ad[n] + Bt[n] * ut);
          acc_dA[n] += static_cast<double>(gn) * hp * e * dt;
          du_t += gn * dt * Bt[n];
          g[n] = gn * e;
        }
        du[t * Dn + d] = du_t;
        const float dx = ddt * softplus_grad(x);
        ddelta[t * Dn + d] = dx;
        acc_dbias += dx;
      }
      const int64_t bd = b * Dn + d;
      std::copy(acc_dA.begin(), acc_dA.end(), part_dA.begin() + bd * N);
      part_dD[bd] = acc_dD;
      part_dbias[bd] = acc_dbias;
    }
  });

  const int64_t T = s.batch * L;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t b = t / L;
    const int64_t i = t % L;
    float* dBt = dB + t * s.ld_bc;
    float* dCt = dC + t * s.ld_bc;
    for (int n = 0; n < N; ++n) {
      dBt[n] = 0.0f;
      dCt[n] = 0.0f;
    }
    for (int grp = 0; grp < groups; ++grp) {
      const float* p = part_bc.data() + ((b * groups + grp) * L + i) * 2 * N;
      for (int n = 0; n < N; ++n) {
        dBt[n] += p[n];
        dCt[n] += p[N + n];
      }
    }
  }

#pragma omp parallel for schedule(static)
  for (int d = 0; d < Dn; ++d) {
    double sD = 0.0;
    double sbias = 0.0;
    for (int64_t b = 0; b < s.batch; ++b) {
      sD += part_dD[b * Dn + d];
      sbias += part_dbias[b * Dn + d];
    }
    dD[d] += static_cast<float>(sD);
    ddelta_bias[d] += static_cast<float>(sbias);
    for (int n = 0; n < N; ++n) {
      double sA = 0.0;
      for (int64_t b = 0; b < s.batch; ++b) sA += part_dA[(b * Dn + d) * N + n];
      dA[static_cast<int64_t>(d) * N + n] += static_cast<float>(sA);
    }
  }
}

}  // namespace mamba::cpu
