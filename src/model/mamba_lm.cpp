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
  void add(Act& a, int64_t elements, ActType type) {
    a.type = type;
    add(a.data, elements * type_bytes(type));
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

ScanShape scan_shape(const Activations& a, const ModelConfig& c) {
  return {a.batch, a.seqlen, c.d_inner(), c.d_state, 2 * int64_t(c.d_inner()), c.xproj_dim()};
}

Conv1dShape conv_shape(const Activations& a, const ModelConfig& c) {
  return {a.batch, a.seqlen, c.d_inner(), c.d_conv, 2 * int64_t(c.d_inner())};
}

// The scan's inputs in layer i.
ScanInputs scan_inputs(const Activations& a, int i, const LayerWeights& w, const ModelConfig& c) {
  const Activations::Layer& l = a.layers[i];
  return layer_scan_inputs(l.xc, l.delta, l.xdbl, l.xz, a.A, w, c);
}

}  // namespace

ScanInputs layer_scan_inputs(ConstAct u, ConstAct delta, ConstAct xdbl, ConstAct xz, const float* A,
                             const LayerWeights& w, const ModelConfig& c) {
  ScanInputs in;
  in.u = u;
  in.delta = delta;
  in.B = xdbl.at(c.rank());
  in.C = xdbl.at(c.rank() + c.d_state);
  in.z = xz.at(c.d_inner());
  in.A = A;
  in.D = w.D;
  in.delta_bias = w.dt_proj_b;
  return in;
}

MambaLM::MambaLM(const ModelConfig& config, Backend& backend, ActivationMemory memory,
                 bool fp32_master)
    : layout_(config), be_(backend), memory_(memory) {
  be_.check_layer_shape(config.d_state, config.d_conv);
  const size_t n = layout_.total();
  grads_ = static_cast<float*>(be_.allocate(n * sizeof(float)));
  be_.fill_zero(grads_, n * sizeof(float));
  if (fp32_master) {
    params_ = static_cast<float*>(be_.allocate(n * sizeof(float)));
    be_.fill_zero(params_, n * sizeof(float));
  }
  weights_ = params_ && be_.act_type() == ActType::F32
                 ? f32_act(params_)
                 : Act{be_.allocate(n * be_.act_bytes()), be_.act_type()};
  if (!params_) {
    be_.fill_zero(weights_.data, n * be_.act_bytes());
    // Neighbours merge (A_log and D, conv1d's weight and bias): fewer copies per refresh.
    for (const ParamTensor& t : layout_.tensors()) {
      if (!t.fp32_read) continue;
      ExactSpan* last = exact_spans_.empty() ? nullptr : &exact_spans_.back();
      if (last && last->offset + last->count == t.offset) {
        last->count += t.numel;
      } else {
        exact_spans_.push_back({t.offset, exact_floats_, t.numel});
      }
      exact_floats_ += t.numel;
    }
    exact_ = static_cast<float*>(be_.allocate(size_t(exact_floats_) * sizeof(float)));
    be_.fill_zero(exact_, size_t(exact_floats_) * sizeof(float));
  }
  place_weights();
  params_updated();
}

MambaLM::~MambaLM() {
  for (auto& a : acts_) be_.release(a->memory);
  if (weights_.data != params_) be_.release(weights_.data);
  if (exact_) be_.release(exact_);
  be_.release(grads_);
  if (params_) be_.release(params_);
}

void MambaLM::place_weights() {
  // The fp32 tensor at this offset of the layout: in params_, or in the exact span holding it.
  auto fp32 = [&](int64_t offset) -> const float* {
    if (params_) return params_ + offset;
    auto span = std::upper_bound(exact_spans_.begin(), exact_spans_.end(), offset,
                                 [](int64_t at, const ExactSpan& s) { return at < s.offset; });
    --span;
    return exact_ + span->exact + (offset - span->offset);
  };
  for (int i = 0; i < config().n_layer; ++i) {
    const LayerOffsets o = layout_.layer_offsets(i);
    layers_.push_back({fp32(o.A_log), fp32(o.D), fp32(o.conv_w), fp32(o.conv_b), fp32(o.dt_proj_b),
                       fp32(o.norm), weights_.at(o.in_proj), weights_.at(o.x_proj),
                       weights_.at(o.dt_proj_w), weights_.at(o.out_proj)});
  }
  embedding_ = fp32(layout_.tensors().front().offset);
  norm_f_ = fp32(layout_.tensors().back().offset);
}

void MambaLM::zero_grads() {
  be_.fill_zero(grads_, layout_.total() * sizeof(float));
}

void MambaLM::params_updated() {
  if (params_ && weights_.data != params_) be_.to_act(weights_, params_, layout_.total());
}

void MambaLM::set_weights(const float* weights) {
  const int64_t n = layout_.total();
  if (params_) {
    if (weights != params_) be_.copy(params_, weights, size_t(n) * sizeof(float));
    params_updated();
    return;
  }
  be_.to_act(weights_, weights, n);
  for (const ExactSpan& s : exact_spans_) {
    be_.copy(exact_ + s.exact, weights + s.offset, size_t(s.count) * sizeof(float));
  }
}

size_t MambaLM::weight_bytes() const {
  const size_t n = layout_.total();
  size_t bytes = params_ ? n * sizeof(float) : 0;
  if (weights_.data != params_) bytes += n * be_.act_bytes();
  return bytes + size_t(exact_floats_) * sizeof(float);
}

std::vector<float> MambaLM::download(const float* device_buffer) const {
  std::vector<float> host(layout_.total());
  be_.download(host.data(), device_buffer, host.size() * sizeof(float));
  return host;
}

void MambaLM::upload_params(const std::vector<float>& host) {
  if (params_) {
    be_.upload(params_, host.data(), layout_.total() * sizeof(float));
    params_updated();
    return;
  }
  // Without a master the weights pass through the gradient buffer, which holds nothing between
  // steps.
  be_.upload(grads_, host.data(), layout_.total() * sizeof(float));
  set_weights(grads_);
  zero_grads();
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
  const size_t f32 = sizeof(float);
  const ActType act = be_.act_type();
  const int64_t dm = c.d_model, di = c.d_inner(), xd = c.xproj_dim();
  // Every layer has its own residual. The rest a layer either has of its own or shares with the
  // others: then layer 0's buffers are planned and every layer points at them.
  const bool own_saved = memory_ != ActivationMemory::Recompute;
  const bool own_inputs = memory_ == ActivationMemory::KeepInputs;
  ArenaPlan plan;
  a->layers.resize(c.n_layer);
  for (int i = 0; i < c.n_layer; ++i) {
    Activations::Layer& l = a->layers[i];
    plan.add(l.residual, T * dm * f32);
    if (own_saved || i == 0) {
      plan.add(l.rstd, T * f32);
      plan.add(l.xz, T * 2 * di, act);
      plan.add(l.xdbl, T * xd, act);
      plan.add(l.scan_saved, be_.scan_saved_bytes(scan_shape(*a, c)));
    }
    if (own_inputs || i == 0) {
      plan.add(l.normed, T * dm, act);
      plan.add(l.xc, T * di, act);
      plan.add(l.delta, T * di, act);
      plan.add(l.y, T * di, act);
    }
  }
  plan.add(a->residual_f, T * dm * f32);
  plan.add(a->normed_f, T * dm, act);
  plan.add(a->rstd_f, T * f32);
  plan.add(a->hidden, T * dm * f32);
  plan.add(a->inputs, T * sizeof(int32_t));
  plan.add(a->targets, T * sizeof(int32_t));
  plan.add(a->dres, T * dm * f32);
  plan.add(a->A, di * c.d_state * f32);
  plan.add(a->dA, di * c.d_state * f32);
  plan.add(a->dres_act, T * dm, act);
  plan.add(a->dnormed, T * dm, act);
  plan.add(a->dxz, T * 2 * di, act);
  plan.add(a->dxc, T * di, act);
  plan.add(a->dxdbl, T * xd, act);
  plan.add(a->ddelta, T * di, act);
  plan.add(a->dy, T * di, act);
  a->bytes = plan.total();
  a->memory = be_.allocate(a->bytes);
  plan.place(a->memory);
  const Activations::Layer first = a->layers[0];
  for (Activations::Layer& l : a->layers) {
    if (!own_saved) {
      l.rstd = first.rstd;
      l.xz = first.xz;
      l.xdbl = first.xdbl;
      l.scan_saved = first.scan_saved;
    }
    if (!own_inputs) {
      l.normed = first.normed;
      l.xc = first.xc;
      l.delta = first.delta;
      l.y = first.y;
    }
  }
  acts_.push_back(std::move(a));
  return *acts_.back();
}

void MambaLM::linear_forward(Act out, int64_t ld_out, ConstAct inp, int64_t ld_inp, ConstAct weight,
                             int in_dim, int out_dim, int64_t T) const {
  LinearForward op;
  op.inp = inp;
  op.ld_inp = ld_inp;
  op.weight = weight;
  op.out = out;
  op.ld_out = ld_out;
  op.T = T;
  op.in_dim = in_dim;
  op.out_dim = out_dim;
  be_.linear_forward(op);
}

void MambaLM::norm_forward(Activations& a, int i, bool refill) {
  const ModelConfig& c = config();
  Activations::Layer& s = a.layers[i];
  RmsNormForward norm;
  // With refill: the norm of the saved residual, which stays as it is.
  norm.hidden = refill ? s.residual : a.hidden;
  norm.residual_in = refill || i == 0 ? nullptr : a.layers[i - 1].residual;
  norm.weight = layers_[i].norm;
  norm.residual_out = refill ? nullptr : s.residual;
  norm.normed = s.normed;
  norm.rstd = s.rstd;
  norm.T = a.T;
  norm.C = c.d_model;
  norm.eps = c.norm_eps;
  be_.residual_rmsnorm_forward(norm);
}

void MambaLM::conv_forward(Activations& a, int i) {
  const LayerWeights& w = layers_[i];
  Conv1dForward conv;
  conv.x = a.layers[i].xz;
  conv.weight = w.conv_w;
  conv.bias = w.conv_b;
  conv.out = a.layers[i].xc;
  be_.conv1d_silu_forward(conv_shape(a, config()), conv);
}

void MambaLM::delta_forward(Activations& a, int i) {
  const ModelConfig& c = config();
  const Activations::Layer& s = a.layers[i];
  linear_forward(s.delta, c.d_inner(), s.xdbl, c.xproj_dim(), layers_[i].dt_proj_w, c.rank(),
                 c.d_inner(), a.T);
}

void MambaLM::forward_layer(Activations& a, int i, bool refill) {
  const ModelConfig& c = config();
  const int dm = c.d_model, di = c.d_inner(), xd = c.xproj_dim();
  Activations::Layer& s = a.layers[i];
  const LayerWeights& w = layers_[i];
  norm_forward(a, i, refill);
  linear_forward(s.xz, 2 * di, s.normed, dm, w.in_proj, dm, 2 * di, a.T);
  conv_forward(a, i);
  linear_forward(s.xdbl, xd, s.xc, di, w.x_proj, di, xd, a.T);
  delta_forward(a, i);
  be_.negative_exp(a.A, w.A_log, int64_t(di) * c.d_state);
  be_.selective_scan_forward(scan_shape(a, c), scan_inputs(a, i, w, c), s.y, nullptr, s.scan_saved);
  if (!refill) linear_forward(f32_act(a.hidden), dm, s.y, di, w.out_proj, di, dm, a.T);
}

void MambaLM::rebuild_layer_inputs(Activations& a, int i) {
  norm_forward(a, i, true);
  conv_forward(a, i);
  delta_forward(a, i);
}

void MambaLM::forward_layers(Activations& a) {
  const ModelConfig& c = config();
  be_.embedding_forward({a.inputs, embedding_, a.hidden, a.T, c.d_model});
  for (int i = 0; i < c.n_layer; ++i) forward_layer(a, i, false);
  RmsNormForward norm;
  norm.hidden = a.hidden;
  norm.residual_in = a.layers.back().residual;
  norm.weight = norm_f_;
  norm.residual_out = a.residual_f;
  norm.normed = a.normed_f;
  norm.rstd = a.rstd_f;
  norm.T = a.T;
  norm.C = c.d_model;
  norm.eps = c.norm_eps;
  be_.residual_rmsnorm_forward(norm);
}

LmHeadLoss MambaLM::lm_head(const Activations& a) const {
  // The embedding is tied to the LM head: its compute copy is the head's weight.
  LmHeadLoss head;
  head.normed = a.normed_f;
  head.E = weights_;
  head.targets = a.targets;
  head.T = a.T;
  head.C = config().d_model;
  head.Vp = config().padded_vocab();
  head.grad_scale = 1.0f;
  return head;
}

double MambaLM::evaluate(const int32_t* inputs, const int32_t* targets, int batch, int seqlen,
                         float* logits_out) {
  Activations& a = activations(batch, seqlen);
  be_.upload(a.inputs, inputs, a.T * sizeof(int32_t));
  be_.upload(a.targets, targets, a.T * sizeof(int32_t));
  forward_layers(a);
  LmHeadLoss head = lm_head(a);
  const size_t logits_bytes = a.T * head.Vp * sizeof(float);
  if (logits_out) head.logits_out = static_cast<float*>(be_.allocate(logits_bytes));
  const double loss = be_.lm_head_loss(head);
  if (logits_out) {
    be_.download(logits_out, head.logits_out, logits_bytes);
    be_.release(head.logits_out);
  }
  return loss;
}

double MambaLM::forward_backward(const int32_t* inputs, const int32_t* targets, int batch,
                                 int seqlen, float grad_scale, GradientReadyHook* hook) {
  Activations& a = activations(batch, seqlen);
  be_.upload(a.inputs, inputs, a.T * sizeof(int32_t));
  be_.upload(a.targets, targets, a.T * sizeof(int32_t));
  forward_layers(a);
  const int dm = config().d_model;
  LmHeadLoss head = lm_head(a);
  head.grad_scale = grad_scale;
  head.dnormed = a.dnormed;
  head.dE = layout_.embedding(grads_);
  const double loss = be_.lm_head_loss(head);
  be_.fill_zero(a.dres, a.T * dm * sizeof(float));
  RmsNormBackward norm;
  norm.dnormed = a.dnormed;
  norm.residual_out = a.residual_f;
  norm.rstd = a.rstd_f;
  norm.weight = norm_f_;
  norm.dresidual = a.dres;
  norm.dweight = layout_.norm_f(grads_);
  norm.dresidual_act = a.dres_act;  // out_proj's backward operand in the last layer
  norm.T = a.T;
  norm.C = dm;
  be_.rmsnorm_backward(norm);
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
  // dinp (=, or += when accumulate) dout @ weight; dweight += dout^T @ inp (each when not null).
  auto linear_backward = [&](Act dinp, int64_t ld_dinp, bool accumulate, float* dweight,
                             ConstAct dout, int64_t ld_dout, ConstAct inp, int64_t ld_inp,
                             ConstAct weight, int in_dim, int out_dim) {
    LinearBackward op;
    op.dout = dout;
    op.ld_dout = ld_dout;
    op.inp = inp;
    op.ld_inp = ld_inp;
    op.weight = weight;
    op.dinp = dinp;
    op.ld_dinp = ld_dinp;
    op.accumulate_dinp = accumulate;
    op.dweight = dweight;
    op.T = T;
    op.in_dim = in_dim;
    op.out_dim = out_dim;
    be_.linear_backward(op);
  };

  for (int i = c.n_layer - 1; i >= 0; --i) {
    if (memory_ == ActivationMemory::Recompute) {
      forward_layer(a, i, true);
    } else if (memory_ == ActivationMemory::Rebuild) {
      rebuild_layer_inputs(a, i);
    }
    const Activations::Layer& s = a.layers[i];
    const LayerWeights& w = layers_[i];
    const LayerView g = layout_.layer(grads_, i);
    // dres is d(hidden_i) as well as d(residual_{i+1}): see the header. Its copy in the activation
    // type, dres_act, was written with it by the norm backward after it.
    // dy now; out_proj's weight gradient once its input y is there (kept, or re-formed by the
    // scan backward).
    linear_backward(a.dy, di, false, nullptr, a.dres_act, dm, s.y, di, w.out_proj, di, dm);
    be_.negative_exp(a.A, w.A_log, int64_t(di) * n);
    be_.fill_zero(a.dA, int64_t(di) * n * sizeof(float));
    ScanGrads scan;
    scan.du = a.dxc;
    scan.ddelta = a.ddelta;
    scan.dB = a.dxdbl.at(r);
    scan.dC = a.dxdbl.at(r + n);
    scan.dz = a.dxz.at(di);
    scan.dA = a.dA;
    scan.dD = g.D;
    scan.ddelta_bias = g.dt_proj_b;
    if (memory_ != ActivationMemory::KeepInputs) scan.out = s.y;  // a kept y is not re-formed
    be_.selective_scan_backward(scan_shape(a, c), scan_inputs(a, i, w, c), a.dy, s.scan_saved,
                                scan);
    linear_backward({}, 0, false, g.out_proj, a.dres_act, dm, s.y, di, w.out_proj, di, dm);
    // A = -exp(A_log), so dA_log = dA * A.
    be_.mul_accumulate(g.A_log, a.dA, a.A, int64_t(di) * n);
    linear_backward(a.dxdbl, xd, false, g.dt_proj_w, a.ddelta, di, s.xdbl, xd, w.dt_proj_w, r, di);
    Conv1dBackward conv;
    conv.dout = a.dxc;
    conv.x = s.xz;
    conv.weight = w.conv_w;
    conv.bias = w.conv_b;
    conv.dx = a.dxz;
    conv.dweight = g.conv_w;
    conv.dbias = g.conv_b;
    // x_proj's input gradient has one reader, the conv backward: where the backend can, it adds
    // that term itself instead of accumulating it into dxc first.
    conv.lowrank = {a.dxdbl, xd, w.x_proj, xd};
    if (be_.conv_backward_takes_lowrank(conv_shape(a, c), conv)) {
      linear_backward({}, 0, false, g.x_proj, a.dxdbl, xd, s.xc, di, w.x_proj, di, xd);
    } else {
      linear_backward(a.dxc, di, true, g.x_proj, a.dxdbl, xd, s.xc, di, w.x_proj, di, xd);
      conv.lowrank = {};
    }
    be_.conv1d_silu_backward(conv_shape(a, c), conv);
    linear_backward(a.dnormed, dm, false, g.in_proj, a.dxz, 2 * di, s.normed, dm, w.in_proj, dm,
                    2 * di);
    RmsNormBackward norm;
    norm.dnormed = a.dnormed;
    norm.residual_out = s.residual;
    norm.rstd = s.rstd;
    norm.weight = w.norm;
    norm.dresidual = a.dres;
    norm.dweight = g.norm;
    if (i > 0) norm.dresidual_act = a.dres_act;  // the layer below's out_proj operand
    norm.T = T;
    norm.C = dm;
    be_.rmsnorm_backward(norm);
    if (hook) hook->ready(layout_.layer_begin(i), layout_.layer_end(i));
  }
  be_.embedding_backward({a.inputs, a.dres, layout_.embedding(grads_), T, dm});
  if (hook) {
    const int64_t embedding = layout_.embedding(grads_) - grads_;
    hook->ready(embedding, embedding + int64_t(config().padded_vocab()) * dm);
  }
}

}  // namespace mamba
