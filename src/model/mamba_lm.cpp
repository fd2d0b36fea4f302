#include "model/mamba_lm.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/conv1d.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/scan.h"

namespace mamba {

namespace {

// Tokens per LM-head chunk: bounds the logits buffer to kHeadChunk x padded_vocab floats.
constexpr int64_t kHeadChunk = 256;

// A = -exp(A_log), the form the scan takes.
void negative_exp(std::vector<float>& A, const float* A_log, int64_t n) {
  A.resize(n);
  for (int64_t j = 0; j < n; ++j) A[j] = -std::exp(A_log[j]);
}

}  // namespace

Activations::Activations(const ModelConfig& c, int batch_, int seqlen_)
    : batch(batch_), seqlen(seqlen_), T(int64_t(batch_) * seqlen_) {
  const int64_t dm = c.d_model, di = c.d_inner();
  layers.resize(c.n_layer);
  for (Layer& l : layers) {
    l.residual.resize(T * dm);
    l.normed.resize(T * dm);
    l.rstd.resize(T);
    l.xz.resize(T * 2 * di);
    l.xc.resize(T * di);
    l.xdbl.resize(T * c.xproj_dim());
    l.delta.resize(T * di);
    l.y.resize(T * di);
  }
  residual_f.resize(T * dm);
  normed_f.resize(T * dm);
  rstd_f.resize(T);
  hidden.resize(T * dm);
  last_state.resize(int64_t(batch) * di * c.d_state);
}

MambaLM::MambaLM(const ModelConfig& config)
    : params(ParamLayout(config).total()), grads(params.size()), layout_(config) {}

Activations& MambaLM::activations(int batch, int seqlen) {
  for (Activations& a : acts_) {
    if (a.batch == batch && a.seqlen == seqlen) return a;
  }
  acts_.emplace_back(config(), batch, seqlen);
  return acts_.back();
}

void MambaLM::forward_layers(Activations& a, const int32_t* inputs) {
  const ModelConfig& c = config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int64_t T = a.T;
  float* P = params.data();
  std::vector<float> A;

  cpu::embedding_forward(a.hidden.data(), inputs, layout_.embedding(P), T, dm);
  for (int i = 0; i < c.n_layer; ++i) {
    Activations::Layer& s = a.layers[i];
    const LayerView w = layout_.layer(P, i);
    const float* residual_in = i == 0 ? nullptr : a.layers[i - 1].residual.data();
    cpu::residual_rmsnorm_forward(s.residual.data(), s.normed.data(), s.rstd.data(),
                                  a.hidden.data(), residual_in, w.norm, T, dm, c.norm_eps);
    cpu::linear_forward(s.xz.data(), 2 * di, s.normed.data(), dm, w.in_proj, T, dm, 2 * di);
    cpu::conv1d_silu_forward(s.xc.data(), s.xz.data(), 2 * di, w.conv_w, w.conv_b, a.batch,
                             a.seqlen, di, c.d_conv);
    cpu::linear_forward(s.xdbl.data(), xd, s.xc.data(), di, w.x_proj, T, di, xd);
    cpu::linear_forward(s.delta.data(), di, s.xdbl.data(), xd, w.dt_proj_w, T, r, di);
    negative_exp(A, w.A_log, int64_t(di) * n);
    const cpu::ScanShape shape{a.batch, a.seqlen, di, n, 2 * int64_t(di), xd};
    cpu::selective_scan_forward(s.y.data(), a.last_state.data(), s.xc.data(), s.delta.data(),
                                A.data(), s.xdbl.data() + r, s.xdbl.data() + r + n, w.D,
                                w.dt_proj_b, s.xz.data() + di, shape);
    cpu::linear_forward(a.hidden.data(), dm, s.y.data(), di, w.out_proj, T, di, dm);
  }
  cpu::residual_rmsnorm_forward(a.residual_f.data(), a.normed_f.data(), a.rstd_f.data(),
                                a.hidden.data(), a.layers.back().residual.data(),
                                layout_.norm_f(P), T, dm, c.norm_eps);
}

double MambaLM::evaluate(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                         float* logits_out) {
  Activations& a = activations(batch, seqlen);
  forward_layers(a, inputs);
  const int dm = config().d_model, vp = config().padded_vocab();
  const float* E = layout_.embedding(params.data());
  std::vector<float> logits(std::min(a.T, kHeadChunk) * vp);
  double loss_sum = 0.0;
  for (int64_t t0 = 0; t0 < a.T; t0 += kHeadChunk) {
    const int64_t rows = std::min(kHeadChunk, a.T - t0);
    float* chunk = logits_out ? logits_out + t0 * vp : logits.data();
    cpu::linear_forward(chunk, vp, a.normed_f.data() + t0 * dm, dm, E, rows, dm, vp);
    loss_sum += cpu::cross_entropy_forward(chunk, targets + t0, rows, vp) * rows;
  }
  return loss_sum / a.T;
}

double MambaLM::forward_backward(const int32_t* inputs, const int32_t* targets, int batch,
                                 int seqlen, float grad_scale) {
  Activations& a = activations(batch, seqlen);
  forward_layers(a, inputs);
  const int dm = config().d_model, vp = config().padded_vocab();
  const float* E = layout_.embedding(params.data());
  float* dE = layout_.embedding(grads.data());

  // Head: logits, loss and their gradient one chunk of tokens at a time.
  std::vector<float> dnormed(a.T * dm);
  std::vector<float> logits(std::min(a.T, kHeadChunk) * vp);
  double loss_sum = 0.0;
  for (int64_t t0 = 0; t0 < a.T; t0 += kHeadChunk) {
    const int64_t rows = std::min(kHeadChunk, a.T - t0);
    const float* x = a.normed_f.data() + t0 * dm;
    cpu::linear_forward(logits.data(), vp, x, dm, E, rows, dm, vp);
    // The kernel's gradient is of its own chunk mean; rescale to the mean over all T tokens.
    const float chunk_scale = grad_scale * float(rows) / float(a.T);
    loss_sum += cpu::cross_entropy_forward_backward(logits.data(), targets + t0, rows, vp,
                                                    chunk_scale) * rows;
    cpu::linear_backward(dnormed.data() + t0 * dm, dm, false, dE, logits.data(), vp, x, dm, E,
                         rows, dm, vp);
  }
  std::vector<float> dres(a.T * dm, 0.0f);
  cpu::rmsnorm_backward(dres.data(), layout_.norm_f(grads.data()), dnormed.data(),
                        a.residual_f.data(), a.rstd_f.data(), layout_.norm_f(params.data()), a.T,
                        dm);
  backward_layers(a, inputs, dres);
  return loss_sum / a.T;
}

void MambaLM::backward_layers(Activations& a, const int32_t* inputs, std::vector<float>& dres) {
  const ModelConfig& c = config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int64_t T = a.T;
  float* P = params.data();
  float* G = grads.data();
  std::vector<float> dnormed(T * dm), dxz(T * 2 * di), dxc(T * di), dxdbl(T * xd),
      ddelta(T * di), dy(T * di), A, dA(int64_t(di) * n);

  for (int i = c.n_layer - 1; i >= 0; --i) {
    const Activations::Layer& s = a.layers[i];
    const LayerView w = layout_.layer(P, i);
    const LayerView g = layout_.layer(G, i);
    // dres is d(hidden_i) as well as d(residual_{i+1}): see the header.
    cpu::linear_backward(dy.data(), di, false, g.out_proj, dres.data(), dm, s.y.data(), di,
                         w.out_proj, T, di, dm);
    negative_exp(A, w.A_log, int64_t(di) * n);
    std::fill(dA.begin(), dA.end(), 0.0f);
    const cpu::ScanShape shape{a.batch, a.seqlen, di, n, 2 * int64_t(di), xd};
    cpu::selective_scan_backward(dxc.data(), ddelta.data(), dA.data(), dxdbl.data() + r,
                                 dxdbl.data() + r + n, g.D, g.dt_proj_b, dxz.data() + di,
                                 dy.data(), s.xc.data(), s.delta.data(), A.data(),
                                 s.xdbl.data() + r, s.xdbl.data() + r + n, w.D, w.dt_proj_b,
                                 s.xz.data() + di, shape);
    // A = -exp(A_log), so dA_log = dA * A.
    for (int64_t j = 0; j < int64_t(di) * n; ++j) g.A_log[j] += dA[j] * A[j];
    cpu::linear_backward(dxdbl.data(), xd, false, g.dt_proj_w, ddelta.data(), di, s.xdbl.data(),
                         xd, w.dt_proj_w, T, r, di);
    cpu::linear_backward(dxc.data(), di, true, g.x_proj, dxdbl.data(), xd, s.xc.data(), di,
                         w.x_proj, T, di, xd);
    cpu::conv1d_silu_backward(dxz.data(), g.conv_w, g.conv_b, dxc.data(), s.xz.data(), 2 * di,
                              w.conv_w, w.conv_b, a.batch, a.seqlen, di, c.d_conv);
    cpu::linear_backward(dnormed.data(), dm, false, g.in_proj, dxz.data(), 2 * di,
                         s.normed.data(), dm, w.in_proj, T, dm, 2 * di);
    cpu::rmsnorm_backward(dres.data(), g.norm, dnormed.data(), s.residual.data(), s.rstd.data(),
                          w.norm, T, dm);
  }
  cpu::embedding_backward(layout_.embedding(G), dres.data(), inputs, T, dm);
}

}  // namespace mamba
