#include "model/recurrent.h"

#include <algorithm>

#include "util/error.h"

namespace mamba {

namespace {

// A device buffer of `bytes`, recorded in `owned` to be released with the others.
void* take(Backend& be, std::vector<void*>& owned, int64_t bytes) {
  owned.push_back(be.allocate(size_t(bytes)));
  return owned.back();
}
Act take_act(Backend& be, std::vector<void*>& owned, int64_t elements) {
  return Act{take(be, owned, elements * int64_t(be.act_bytes())), be.act_type()};
}
float* take_f32(Backend& be, std::vector<void*>& owned, int64_t elements) {
  return static_cast<float*>(take(be, owned, elements * int64_t(sizeof(float))));
}
void release_all(Backend& be, std::vector<void*>& owned) {
  be.synchronize();  // queued work may still use them
  for (void* p : owned) be.release(p);
  owned.clear();
}

}  // namespace

RecurrentLM::RecurrentLM(MambaLM& model, int batch, bool record)
    : model_(model), be_(model.backend()) {
  step_recorder_ = record ? be_.make_step_recorder() : std::make_unique<StepRecorder>();
  greedy_recorder_ = record ? be_.make_step_recorder() : std::make_unique<StepRecorder>();
  reset(batch);
}

RecurrentLM::~RecurrentLM() {
  // The recordings name the buffers: gone first.
  step_recorder_.reset();
  greedy_recorder_.reset();
  release();
}

void RecurrentLM::release() {
  release_all(be_, memory_);
  release_all(be_, prefill_.memory);
  prefill_.tokens = 0;
}

void RecurrentLM::allocate(int batch) {
  release();
  batch_ = 0;  // until every buffer is there
  const ModelConfig& c = model_.config();
  const int64_t B = batch, dm = c.d_model, di = c.d_inner(), n = c.d_state;
  ids_ = static_cast<int32_t*>(take(be_, memory_, B * int64_t(sizeof(int32_t))));
  hidden_ = take_f32(be_, memory_, B * dm);
  residual_ = take_f32(be_, memory_, B * dm);
  rstd_ = take_f32(be_, memory_, B);
  logits_ = take_f32(be_, memory_, B * c.padded_vocab());
  normed_ = take_act(be_, memory_, B * dm);
  xz_ = take_act(be_, memory_, B * 2 * di);
  xc_ = take_act(be_, memory_, B * di);
  xdbl_ = take_act(be_, memory_, B * c.xproj_dim());
  delta_ = take_act(be_, memory_, B * di);
  y_ = take_act(be_, memory_, B * di);
  A_ = take_f32(be_, memory_, c.n_layer * di * n);
  conv_state_ = take_f32(be_, memory_, c.n_layer * B * di * (c.d_conv - 1));
  ssm_state_ = take_f32(be_, memory_, c.n_layer * B * di * n);
  batch_ = batch;
}

void RecurrentLM::reset(int batch) {
  if (batch < 1) throw_error("generation: batch = ", batch, ": give at least one sequence");
  if (batch != batch_) allocate(batch);
  const ModelConfig& c = model_.config();
  const int64_t di = c.d_inner(), n = c.d_state;
  be_.fill_zero(conv_state_, size_t(c.n_layer * batch_ * di * (c.d_conv - 1)) * sizeof(float));
  be_.fill_zero(ssm_state_, size_t(c.n_layer * batch_ * di * n) * sizeof(float));
  for (int i = 0; i < c.n_layer; ++i) {
    be_.negative_exp(A_ + i * di * n, model_.layer_weights(i).A_log, di * n);
  }
  fresh_ = true;
}

void RecurrentLM::norm(float* hidden, float* residual, bool first, const float* weight, Act normed,
                       float* rstd, int64_t rows) {
  RmsNormForward op;
  op.hidden = hidden;
  op.residual_in = first ? nullptr : residual;
  op.weight = weight;
  op.residual_out = residual;
  op.normed = normed;
  op.rstd = rstd;
  op.T = rows;
  op.C = model_.config().d_model;
  op.eps = model_.config().norm_eps;
  be_.residual_rmsnorm_forward(op);
}

void RecurrentLM::forward() {
  const ModelConfig& c = model_.config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int64_t B = batch_;
  be_.embedding_forward({ids_, model_.embedding_fp32(), hidden_, B, dm});
  const Conv1dShape conv_shape{batch_, 1, di, c.d_conv, 2 * int64_t(di)};
  const ScanShape scan_shape{batch_, 1, di, n, 2 * int64_t(di), xd};
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& w = model_.layer_weights(i);
    // In place: the new residual is hidden + the previous residual (none before layer 0).
    norm(hidden_, residual_, i == 0, w.norm, normed_, rstd_, B);
    model_.linear_forward(xz_, 2 * di, normed_, dm, w.in_proj, dm, 2 * di, B);
    Conv1dStep conv;
    conv.x = xz_;
    conv.weight = w.conv_w;
    conv.bias = w.conv_b;
    conv.state = conv_state_ + i * B * di * (c.d_conv - 1);
    conv.out = xc_;
    be_.conv1d_silu_step(conv_shape, conv);
    model_.linear_forward(xdbl_, xd, xc_, di, w.x_proj, di, xd, B);
    model_.linear_forward(delta_, di, xdbl_, xd, w.dt_proj_w, r, di, B);
    const ScanInputs in =
        layer_scan_inputs(xc_, delta_, xdbl_, xz_, A_ + int64_t(i) * di * n, w, c);
    be_.selective_scan_step(scan_shape, in, y_, ssm_state_ + i * B * di * n);
    model_.linear_forward(f32_act(hidden_), dm, y_, di, w.out_proj, di, dm, B);
  }
  norm(hidden_, residual_, false, model_.norm_f_fp32(), normed_, rstd_, B);
  // The LM head is the tied embedding.
  model_.linear_forward(f32_act(logits_), c.padded_vocab(), normed_, dm, model_.head_weight(), dm,
                        c.padded_vocab(), B);
}

// The full forward over [batch, L] prompt tokens (as MambaLM's, without what backward needs),
// keeping each layer's final states: the scan's last state, and the conv's last K-1 inputs, shifted
// into the (zero) conv state by the step op. The logits are those of each prompt's last position.
void RecurrentLM::prefill_parallel(const int32_t* prompts, int L) {
  const ModelConfig& c = model_.config();
  const int dm = c.d_model, di = c.d_inner(), n = c.d_state, r = c.rank(), xd = c.xproj_dim();
  const int K = c.d_conv;
  const int64_t B = batch_, T = B * L;
  const Conv1dShape conv_shape{batch_, L, di, K, 2 * int64_t(di)};
  const ScanShape scan_shape{batch_, L, di, n, 2 * int64_t(di), xd};
  Prefill& a = prefill_;
  if (a.tokens != T) {
    release_all(be_, a.memory);
    a.ids = static_cast<int32_t*>(take(be_, a.memory, T * int64_t(sizeof(int32_t))));
    a.hidden = take_f32(be_, a.memory, T * dm);
    a.residual = take_f32(be_, a.memory, T * dm);
    a.rstd = take_f32(be_, a.memory, T);
    a.normed = take_act(be_, a.memory, T * dm);
    a.xz = take_act(be_, a.memory, T * 2 * di);
    a.xc = take_act(be_, a.memory, T * di);
    a.xdbl = take_act(be_, a.memory, T * xd);
    a.delta = take_act(be_, a.memory, T * di);
    a.y = take_act(be_, a.memory, T * di);
    a.scan_saved = take(be_, a.memory, int64_t(be_.scan_saved_bytes(scan_shape)));
    a.tokens = T;
  }
  int32_t* ids = a.ids;
  float *hidden = a.hidden, *residual = a.residual, *rstd = a.rstd;
  const Act normed = a.normed, xz = a.xz, xc = a.xc, xdbl = a.xdbl, delta = a.delta, y = a.y;
  void* scan_saved = a.scan_saved;
  // Position p of every prompt, as [batch] rows of stride L * 2 * d_inner.
  const Conv1dShape column_shape{batch_, 1, di, K, int64_t(L) * 2 * di};

  be_.upload(ids, prompts, size_t(T) * sizeof(int32_t));
  be_.embedding_forward({ids, model_.embedding_fp32(), hidden, T, dm});
  for (int i = 0; i < c.n_layer; ++i) {
    const LayerWeights& w = model_.layer_weights(i);
    norm(hidden, residual, i == 0, w.norm, normed, rstd, T);
    model_.linear_forward(xz, 2 * di, normed, dm, w.in_proj, dm, 2 * di, T);
    Conv1dForward conv;
    conv.x = xz;
    conv.weight = w.conv_w;
    conv.bias = w.conv_b;
    conv.out = xc;
    be_.conv1d_silu_forward(conv_shape, conv);
    Conv1dStep shift;
    shift.weight = w.conv_w;
    shift.bias = w.conv_b;
    shift.state = conv_state_ + i * B * di * (K - 1);
    shift.out = y_;  // discarded
    for (int p = std::max(0, L - (K - 1)); p < L; ++p) {
      shift.x = xz.at(int64_t(p) * 2 * di);
      be_.conv1d_silu_step(column_shape, shift);
    }
    model_.linear_forward(xdbl, xd, xc, di, w.x_proj, di, xd, T);
    model_.linear_forward(delta, di, xdbl, xd, w.dt_proj_w, r, di, T);
    const ScanInputs in = layer_scan_inputs(xc, delta, xdbl, xz, A_ + int64_t(i) * di * n, w, c);
    be_.selective_scan_forward(scan_shape, in, y, ssm_state_ + i * B * di * n, scan_saved);
    model_.linear_forward(f32_act(hidden), dm, y, di, w.out_proj, di, dm, T);
  }
  norm(hidden, residual, false, model_.norm_f_fp32(), normed, rstd, T);
  model_.linear_forward(f32_act(logits_), c.padded_vocab(), normed.at(int64_t(L - 1) * dm),
                        int64_t(L) * dm, model_.head_weight(), dm, c.padded_vocab(), B);
}

void RecurrentLM::step(const int32_t* tokens) {
  fresh_ = false;
  be_.upload(ids_, tokens, size_t(batch_) * sizeof(int32_t));
  step_recorder_->run(batch_, [this] { forward(); });
}

void RecurrentLM::prefill(const int32_t* prompts, int length) {
  if (fresh_ && length > 1) {
    prefill_parallel(prompts, length);
    fresh_ = false;
    return;
  }
  std::vector<int32_t> column(batch_);
  for (int p = 0; p < length; ++p) {
    for (int b = 0; b < batch_; ++b) column[b] = prompts[int64_t(b) * length + p];
    step(column.data());
  }
}

void RecurrentLM::step_greedy(int n, int32_t* out) {
  fresh_ = false;
  const ModelConfig& c = model_.config();
  // Each step's tokens are copied aside on the device, so that no step waits for the host.
  int32_t* history = nullptr;
  const size_t row_bytes = size_t(batch_) * sizeof(int32_t);
  if (out && n > 1) history = static_cast<int32_t*>(be_.allocate(row_bytes * n));
  for (int t = 0; t < n; ++t) {
    greedy_recorder_->run(batch_, [&] {
      be_.argmax_rows({logits_, ids_, batch_, c.vocab_size, c.padded_vocab()});
      forward();
    });
    if (history) be_.copy(history + int64_t(t) * batch_, ids_, row_bytes);
  }
  if (history) {
    be_.download(out, history, row_bytes * n);
    be_.release(history);
  } else if (out && n == 1) {
    be_.download(out, ids_, row_bytes);
  }
}

std::vector<float> RecurrentLM::logits() const {
  std::vector<float> host(int64_t(batch_) * model_.config().padded_vocab());
  be_.download(host.data(), logits_, host.size() * sizeof(float));
  return host;
}

std::vector<int32_t> generate(MambaLM& model, const std::vector<int32_t>& prompt, int max_tokens,
                              int32_t stop_token, const SamplerSettings& sampling, Rng& rng) {
  if (prompt.empty()) throw_error("generation: the prompt is empty: give at least one token");
  RecurrentLM rec(model, 1);
  rec.prefill(prompt.data(), int(prompt.size()));
  std::vector<int32_t> out;
  for (int i = 0; i < max_tokens; ++i) {
    int32_t next = 0;
    if (sampling.temperature <= 0.0f) {
      // The argmax is fed at once; a stop token's step is wasted work, but nothing reads it.
      rec.step_greedy(1, &next);
    } else {
      next = sample_token(rec.logits().data(), model.config().vocab_size, sampling, rng);
    }
    if (next == stop_token) break;
    out.push_back(next);
    if (sampling.temperature > 0.0f) rec.step(&next);
  }
  return out;
}

}  // namespace mamba
