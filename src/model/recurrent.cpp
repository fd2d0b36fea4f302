#include "model/recurrent.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/recurrent.h"
#include "kernels/cpu/rmsnorm.h"

namespace mamba {

RecurrentLM::RecurrentLM(const ParamLayout& layout, const float* params)
    : layout_(layout), params_(const_cast<float*>(params)) {
  const ModelConfig& c = layout.config();
  const int di = c.d_inner(), n = c.d_state;
  conv_state_.assign(c.n_layer, std::vector<float>(int64_t(di) * (c.d_conv - 1)));
  ssm_state_.assign(c.n_layer, std::vector<float>(int64_t(di) * n));
  for (int i = 0; i < c.n_layer; ++i) {
    const float* A_log = layout.layer(params_, i).A_log;
    std::vector<float> A(int64_t(di) * n);
    for (size_t j = 0; j < A.size(); ++j) A[j] = -std::exp(A_log[j]);
    A_.push_back(std::move(A));
  }
  hidden_.resize(c.d_model);
  residual_.resize(c.d_model);
  normed_.resize(c.d_model);
  xz_.resize(2 * di);
  xc_.resize(di);
  xdbl_.resize(c.xproj_dim());
  delta_.resize(di);
  y_.resize(di);
  logits_.resize(c.padded_vocab());
}

void RecurrentLM::reset() {
  for (auto& s : conv_state_) std::fill(s.begin(), s.end(), 0.0f);
  for (auto& s : ssm_state_) std::fill(s.begin(), s.end(), 0.0f);
}

const float* RecurrentLM::step(int32_t token) {
  const ModelConfig& c = layout_.config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  cpu::embedding_forward(hidden_.data(), &token, layout_.embedding(params_), 1, dm);
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerView w = layout_.layer(params_, i);
    // In place: the new residual is hidden + the previous residual (none before layer 0).
    cpu::residual_rmsnorm_forward(residual_.data(), normed_.data(), &rstd_, hidden_.data(),
                                  i == 0 ? nullptr : residual_.data(), w.norm, 1, dm, c.norm_eps);
    cpu::linear_forward(xz_.data(), 2 * di, normed_.data(), dm, w.in_proj, 1, dm, 2 * di);
    cpu::conv1d_silu_step(xc_.data(), conv_state_[i].data(), xz_.data(), w.conv_w, w.conv_b, di,
                          c.d_conv);
    cpu::linear_forward(xdbl_.data(), xd, xc_.data(), di, w.x_proj, 1, di, xd);
    cpu::linear_forward(delta_.data(), di, xdbl_.data(), xd, w.dt_proj_w, 1, r, di);
    cpu::selective_scan_step(y_.data(), ssm_state_[i].data(), xc_.data(), delta_.data(),
                             A_[i].data(), xdbl_.data() + r, xdbl_.data() + r + n, w.D, w.dt_proj_b,
                             xz_.data() + di, di, n);
    cpu::linear_forward(hidden_.data(), dm, y_.data(), di, w.out_proj, 1, di, dm);
  }
  cpu::residual_rmsnorm_forward(residual_.data(), normed_.data(), &rstd_, hidden_.data(),
                                residual_.data(), layout_.norm_f(params_), 1, dm, c.norm_eps);
  cpu::linear_forward(logits_.data(), c.padded_vocab(), normed_.data(), dm,
                      layout_.embedding(params_), 1, dm, c.padded_vocab());
  return logits_.data();
}

std::vector<int32_t> generate(const ParamLayout& layout, const float* params,
                              const std::vector<int32_t>& prompt, int max_tokens,
                              int32_t stop_token, const SamplerSettings& sampling, Rng& rng) {
  RecurrentLM rec(layout, params);
  const float* logits = nullptr;
  for (int32_t t : prompt) logits = rec.step(t);
  std::vector<int32_t> out;
  for (int i = 0; i < max_tokens; ++i) {
    const int32_t next = sample_token(logits, layout.config().vocab_size, sampling, rng);
    if (next == stop_token) break;
    out.push_back(next);
    logits = rec.step(next);
  }
  return out;
}

}  // namespace mamba
