#include "model/params.h"

#include <cmath>

#include "util/rng.h"

namespace mamba {

namespace {

// Tensor order inside one layer, matching mamba_ssm's state_dict.
enum LayerTensor {
  kALog,
  kD,
  kInProj,
  kConvW,
  kConvB,
  kXProj,
  kDtProjW,
  kDtProjB,
  kOutProj,
  kNorm,
  kCount
};

struct LayerTensorSpec {
  const char* suffix;
  bool weight_decay;
};

const LayerTensorSpec kLayerSpecs[kCount] = {
    {"mixer.A_log", false},          {"mixer.D", false},
    {"mixer.in_proj.weight", true},  {"mixer.conv1d.weight", true},
    {"mixer.conv1d.bias", false},    {"mixer.x_proj.weight", true},
    {"mixer.dt_proj.weight", true},  {"mixer.dt_proj.bias", false},
    {"mixer.out_proj.weight", true}, {"norm.weight", false},
};

std::vector<int64_t> layer_tensor_shape(const ModelConfig& c, int which) {
  const int64_t di = c.d_inner(), dm = c.d_model, n = c.d_state, r = c.rank();
  switch (which) {
    case kALog:
      return {di, n};
    case kD:
      return {di};
    case kInProj:
      return {2 * di, dm};
    case kConvW:
      return {di, 1, c.d_conv};
    case kConvB:
      return {di};
    case kXProj:
      return {r + 2 * n, di};
    case kDtProjW:
      return {di, r};
    case kDtProjB:
      return {di};
    case kOutProj:
      return {dm, di};
    default:
      return {dm};
  }
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

}  // namespace

ParamLayout::ParamLayout(const ModelConfig& config) : config_(config) {
  config_.validate();
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay) {
    ParamTensor t;
    t.name = std::move(name);
    t.numel = product(shape);
    t.shape = std::move(shape);
    t.offset = total_;
    t.weight_decay = decay;
    total_ += t.numel;
    tensors_.push_back(std::move(t));
  };
  embedding_offset_ = total_;
  add("backbone.embedding.weight", {config_.padded_vocab(), config_.d_model}, false);
  for (int i = 0; i < config_.n_layer; ++i) {
    layer_offsets_.push_back(total_);
    const std::string prefix = "backbone.layers." + std::to_string(i) + ".";
    for (int k = 0; k < kCount; ++k) {
      add(prefix + kLayerSpecs[k].suffix, layer_tensor_shape(config_, k),
          kLayerSpecs[k].weight_decay);
    }
  }
  layer_numel_ = (total_ - layer_offsets_.front()) / config_.n_layer;
  norm_f_offset_ = total_;
  add("backbone.norm_f.weight", {config_.d_model}, false);
}

const ParamTensor* ParamLayout::find(const std::string& name) const {
  for (const ParamTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

LayerView ParamLayout::layer(float* buffer, int i) const {
  // Tensors of layer i follow the embedding tensor, kCount per layer.
  const ParamTensor* t = &tensors_[1 + static_cast<size_t>(i) * kCount];
  auto at = [&](int k) { return buffer + t[k].offset; };
  return {at(kALog),  at(kD),       at(kInProj),  at(kConvW),   at(kConvB),
          at(kXProj), at(kDtProjW), at(kDtProjB), at(kOutProj), at(kNorm)};
}

void init_params(const ParamLayout& layout, float* params, uint64_t seed) {
  const ModelConfig& c = layout.config();
  const int di = c.d_inner(), n = c.d_state, r = c.rank();
  Rng rng(seed);
  auto uniform_fill = [&](float* p, int64_t count, double bound) {
    for (int64_t j = 0; j < count; ++j) p[j] = static_cast<float>(rng.uniform(-bound, bound));
  };

  float* emb = layout.embedding(params);
  for (int64_t j = 0; j < int64_t(c.padded_vocab()) * c.d_model; ++j) {
    emb[j] = static_cast<float>(0.02 * rng.normal());
  }
  for (int i = 0; i < c.n_layer; ++i) {
    LayerView l = layout.layer(params, i);
    for (int d = 0; d < di; ++d) {
      for (int s = 0; s < n; ++s) l.A_log[d * n + s] = std::log(static_cast<float>(s + 1));
      l.D[d] = 1.0f;
    }
    uniform_fill(l.in_proj, int64_t(2) * di * c.d_model, 1.0 / std::sqrt(double(c.d_model)));
    uniform_fill(l.conv_w, int64_t(di) * c.d_conv, 1.0 / std::sqrt(double(c.d_conv)));
    uniform_fill(l.conv_b, di, 1.0 / std::sqrt(double(c.d_conv)));
    uniform_fill(l.x_proj, int64_t(r + 2 * n) * di, 1.0 / std::sqrt(double(di)));
    uniform_fill(l.dt_proj_w, int64_t(di) * r, 1.0 / std::sqrt(double(r)));
    for (int d = 0; d < di; ++d) {
      // dt log-uniform in [1e-3, 1e-1]; the bias is its inverse softplus, so softplus(bias) = dt.
      double dt = std::exp(rng.uniform(std::log(1e-3), std::log(1e-1)));
      dt = std::max(dt, 1e-4);
      l.dt_proj_b[d] = static_cast<float>(dt + std::log(-std::expm1(-dt)));
    }
    uniform_fill(l.out_proj, int64_t(c.d_model) * di,
                 1.0 / std::sqrt(double(di)) / std::sqrt(double(c.n_layer)));
    for (int j = 0; j < c.d_model; ++j) l.norm[j] = 1.0f;
  }
  float* nf = layout.norm_f(params);
  for (int j = 0; j < c.d_model; ++j) nf[j] = 1.0f;
}

}  // namespace mamba
