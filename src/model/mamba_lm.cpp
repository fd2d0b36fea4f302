#include "model/mamba_lm.h"

#include <algorithm>

namespace mamba {

namespace {

// Records buffer requests, then carves them out of one allocation (256-byte aligned each).
class ArenaPlan {
 public:
  template <typename T>
  void add(T*& ptr, size_t bytes) {
    requests_.push_back({reinterpret_cast<void**>(&ptr), total_});
    total_ += (bytes + 255) / 256 * 256;
  }
  void place(void* base) const {
    for (const auto& r : requests_) *r.ptr = static_cast<char*>(base) + r.offset;
  }
  size_t total() const { return total_; }

 private:
  struct Request {
    void** ptr;
    size_t offset;
  };
  std::vector<Request> requests_;
  size_t total_ = 0;
};

}  // namespace

MambaLM::MambaLM(const ModelConfig& config, Backend& backend, bool recompute)
    : layout_(config), be_(backend), recompute_(recompute) {
  be_.check_layer_shape(config.d_state, config.d_conv);
  const size_t n = layout_.total();
  params_ = static_cast<float*>(be_.allocate(n * sizeof(float)));
  grads_ = static_cast<float*>(be_.allocate(n * sizeof(float)));
  be_.fill_zero(params_, n * sizeof(float));
  be_.fill_zero(grads_, n * sizeof(float));
  weights_ = be_.act_bytes() == sizeof(float) ? static_cast<Act>(params_)
                                              : be_.allocate(n * be_.act_bytes());
  params_updated();
}

MambaLM::~MambaLM() {
  for (auto& a : acts_) be_.release(a->memory);
  if (weights_ != params_) be_.release(weights_);
  be_.release(grads_);
  be_.release(params_);
}

void MambaLM::zero_grads() {
  be_.fill_zero(grads_, layout_.total() * sizeof(float));
}

void MambaLM::params_updated() {
  if (weights_ != params_) be_.to_act(weights_, params_, layout_.total());
}

std::vector<float> MambaLM::download(const float* device_buffer) const {
  std::vector<float> host(layout_.total());
  be_.download(host.data(), device_buffer, host.size() * sizeof(float));
  return host;
}

void MambaLM::upload_params(const std::vector<float>& host) {
  be_.upload(params_, host.data(), layout_.total() * sizeof(float));
  params_updated();
}

size_t MambaLM::activation_bytes() const {
  size_t most = 0;
  for (const auto& a : acts_) most = std::max(most, a->bytes);
  return most;
}

Activations& MambaLM::activations(int batch, int seqlen) {
  for (auto& a : acts_) {
    if (a->batch == batch && a->seqlen == seqlen) return *a;
  }
  const ModelConfig& c = config();
  auto a = std::make_unique<Activations>();
  a->batch = batch;
  a->seqlen = seqlen;
  const int64_t T = a->T = int64_t(batch) * seqlen;
  const size_t f32 = sizeof(float), act = be_.act_bytes();
  const int64_t dm = c.d_model, di = c.d_inner(), xd = c.xproj_dim();
  const cpu::ScanShape shape{batch, seqlen, int(di), c.d_state, 2 * di, xd};
  ArenaPlan plan;
  a->layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    Activations::Layer& l = a->layers[i];
    plan.add(l.residual, T * dm * f32);
    if (recompute_ && i > 0) continue;
    plan.add(l.normed, T * dm * act);
    plan.add(l.rstd, T * f32);
    plan.add(l.xz, T * 2 * di * act);
    plan.add(l.xc, T * di * act);
    plan.add(l.xdbl, T * xd * act);
    plan.add(l.delta, T * di * act);
    plan.add(l.y, T * di * act);
    plan.add(l.scan_saved, be_.scan_saved_bytes(shape));
  }
  plan.add(a->residual_f, T * dm * f32);
  plan.add(a->normed_f, T * dm * act);
  plan.add(a->rstd_f, T * f32);
  plan.add(a->hidden, T * dm * f32);
  plan.add(a->inputs, T * sizeof(int32_t));
  plan.add(a->targets, T * sizeof(int32_t));
  plan.add(a->dres, T * dm * f32);
  plan.add(a->A, di * c.d_state * f32);
  plan.add(a->dA, di * c.d_state * f32);
  plan.add(a->dres_act, T * dm * act);
  plan.add(a->dnormed, T * dm * act);
  plan.add(a->dxz, T * 2 * di * act);
  plan.add(a->dxc, T * di * act);
  plan.add(a->dxdbl, T * xd * act);
  plan.add(a->ddelta, T * di * act);
  plan.add(a->dy, T * di * act);
  a->bytes = plan.total();
  a->memory = be_.allocate(a->bytes);
  plan.place(a->memory);
  if (recompute_) {
    for (Activations::Layer& l : a->layers) {
      float* residual = l.residual;
      l = a->layers[0];
      l.residual = residual;
    }
  }
  acts_.push_back(std::move(a));
  return *acts_.back();
}

// Pointer arithmetic on activation-type buffers: element offsets scaled by the type's size.
static Act at(Act base, int64_t elements, size_t act_bytes) {
  return static_cast<char*>(base) + elements * act_bytes;
}

void MambaLM::forward_layer(Activations& a, int i, bool refill) {
  const ModelConfig& c = config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int64_t T = a.T;
  const size_t ab = be_.act_bytes();
  // The compute copy of a weight sits at the same element offset as its fp32 master.
  auto w_act = [&](const float* master) { return at(weights_, master - params_, ab); };
  Activations::Layer& s = a.layers[i];
  const LayerView w = layout_.layer(params_, i);
  if (refill) {
    // The norm of the saved residual; its copy lands in hidden, free during backward.
    be_.residual_rmsnorm_forward(a.hidden, s.normed, s.rstd, s.residual, nullptr, w.norm, T, dm,
                                 c.norm_eps);
  } else {
    const float* residual_in = i == 0 ? nullptr : a.layers[i - 1].residual;
    be_.residual_rmsnorm_forward(s.residual, s.normed, s.rstd, a.hidden, residual_in, w.norm, T, dm,
                                 c.norm_eps);
  }
  be_.linear_forward(s.xz, 2 * di, s.normed, dm, w_act(w.in_proj), T, dm, 2 * di);
  be_.conv1d_silu_forward(s.xc, s.xz, 2 * di, w.conv_w, w.conv_b, a.batch, a.seqlen, di, c.d_conv);
  be_.linear_forward(s.xdbl, xd, s.xc, di, w_act(w.x_proj), T, di, xd);
  be_.linear_forward(s.delta, di, s.xdbl, xd, w_act(w.dt_proj_w), T, r, di);
  be_.negative_exp(a.A, w.A_log, int64_t(di) * n);
  const cpu::ScanShape shape{a.batch, a.seqlen, di, n, 2 * int64_t(di), xd};
  be_.selective_scan_forward(s.y, nullptr, s.scan_saved, s.xc, s.delta, a.A, at(s.xdbl, r, ab),
                             at(s.xdbl, r + n, ab), w.D, w.dt_proj_b, at(s.xz, di, ab), shape);
  if (!refill) be_.linear_forward_f32(a.hidden, dm, s.y, di, w_act(w.out_proj), T, di, dm);
}

void MambaLM::forward_layers(Activations& a) {
  const ModelConfig& c = config();
  be_.embedding_forward(a.hidden, a.inputs, layout_.embedding(params_), a.T, c.d_model);
  for (int i = 0; i < c.n_layer; ++i) forward_layer(a, i, false);
  be_.residual_rmsnorm_forward(a.residual_f, a.normed_f, a.rstd_f, a.hidden,
                               a.layers.back().residual, layout_.norm_f(params_), a.T, c.d_model,
                               c.norm_eps);
}

double MambaLM::evaluate(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                         float* logits_out) {
  Activations& a = activations(batch, seqlen);
  be_.upload(a.inputs, inputs, a.T * sizeof(int32_t));
  be_.upload(a.targets, targets, a.T * sizeof(int32_t));
  forward_layers(a);
  const int dm = config().d_model, vp = config().padded_vocab();
  float* logits = nullptr;
  if (logits_out) logits = static_cast<float*>(be_.allocate(a.T * vp * sizeof(float)));
  const double loss = be_.lm_head_loss(a.normed_f, weights_, a.targets, a.T, dm, vp, 1.0f, nullptr,
                                       nullptr, logits);
  if (logits) {
    be_.download(logits_out, logits, a.T * vp * sizeof(float));
    be_.release(logits);
  }
  return loss;
}

double MambaLM::forward_backward(const int32_t* inputs, const int32_t* targets, int batch,
                                 int seqlen, float grad_scale, GradientReadyHook* hook) {
  Activations& a = activations(batch, seqlen);
  be_.upload(a.inputs, inputs, a.T * sizeof(int32_t));
  be_.upload(a.targets, targets, a.T * sizeof(int32_t));
  forward_layers(a);
  const int dm = config().d_model, vp = config().padded_vocab();
  // The embedding is tied to the LM head: its compute copy is the head's weight.
  const double loss = be_.lm_head_loss(a.normed_f, weights_, a.targets, a.T, dm, vp, grad_scale,
                                       a.dnormed, layout_.embedding(grads_), nullptr);
  be_.fill_zero(a.dres, a.T * dm * sizeof(float));
  be_.rmsnorm_backward(a.dres, layout_.norm_f(grads_), a.dnormed, a.residual_f, a.rstd_f,
                       layout_.norm_f(params_), a.T, dm);
  if (hook) {
    const int64_t norm_f = layout_.norm_f(grads_) - grads_;
    hook->ready(norm_f, norm_f + dm);
  }
  backward_layers(a, hook);
  return loss;
}

void MambaLM::backward_layers(Activations& a, GradientReadyHook* hook) {
  const ModelConfig& c = config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int64_t T = a.T;
  const size_t ab = be_.act_bytes();
  auto w_act = [&](const float* master) { return at(weights_, master - params_, ab); };

  for (int i = c.n_layer - 1; i >= 0; --i) {
    if (recompute_) forward_layer(a, i, true);
    const Activations::Layer& s = a.layers[i];
    const LayerView w = layout_.layer(params_, i);
    const LayerView g = layout_.layer(grads_, i);
    // dres is d(hidden_i) as well as d(residual_{i+1}): see the header.
    be_.to_act(a.dres_act, a.dres, T * dm);
    be_.linear_backward(a.dy, di, false, g.out_proj, a.dres_act, dm, s.y, di, w_act(w.out_proj), T,
                        di, dm);
    be_.negative_exp(a.A, w.A_log, int64_t(di) * n);
    be_.fill_zero(a.dA, int64_t(di) * n * sizeof(float));
    const cpu::ScanShape shape{a.batch, a.seqlen, di, n, 2 * int64_t(di), xd};
    be_.selective_scan_backward(a.dxc, a.ddelta, a.dA, at(a.dxdbl, r, ab), at(a.dxdbl, r + n, ab),
                                g.D, g.dt_proj_b, at(a.dxz, di, ab), a.dy, s.scan_saved, s.xc,
                                s.delta, a.A, at(s.xdbl, r, ab), at(s.xdbl, r + n, ab), w.D,
                                w.dt_proj_b, at(s.xz, di, ab), shape);
    // A = -exp(A_log), so dA_log = dA * A.
    be_.mul_accumulate(g.A_log, a.dA, a.A, int64_t(di) * n);
    be_.linear_backward(a.dxdbl, xd, false, g.dt_proj_w, a.ddelta, di, s.xdbl, xd,
                        w_act(w.dt_proj_w), T, r, di);
    be_.linear_backward(a.dxc, di, true, g.x_proj, a.dxdbl, xd, s.xc, di, w_act(w.x_proj), T, di,
                        xd);
    be_.conv1d_silu_backward(a.dxz, g.conv_w, g.conv_b, a.dxc, s.xz, 2 * di, w.conv_w, w.conv_b,
                             a.batch, a.seqlen, di, c.d_conv);
    be_.linear_backward(a.dnormed, dm, false, g.in_proj, a.dxz, 2 * di, s.normed, dm,
                        w_act(w.in_proj), T, dm, 2 * di);
    be_.rmsnorm_backward(a.dres, g.norm, a.dnormed, s.residual, s.rstd, w.norm, T, dm);
    if (hook) hook->ready(layout_.layer_begin(i), layout_.layer_end(i));
  }
  be_.embedding_backward(layout_.embedding(grads_), a.dres, a.inputs, T, dm);
  if (hook) {
    const int64_t embedding = layout_.embedding(grads_) - grads_;
    hook->ready(embedding, embedding + int64_t(config().padded_vocab()) * dm);
  }
}

}  // namespace mamba
