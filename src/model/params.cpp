#include "model/params.h"

#include <cmath>

#include "kernels/cpu/init_fill.h"

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
  bool weight_decay, fp32_read;
};

const LayerTensorSpec kLayerSpecs[kCount] = {
    {"mixer.A_log", false, true},           {"mixer.D", false, true},
    {"mixer.in_proj.weight", true, false},  {"mixer.conv1d.weight", true, true},
    {"mixer.conv1d.bias", false, true},     {"mixer.x_proj.weight", true, false},
    {"mixer.dt_proj.weight", true, false},  {"mixer.dt_proj.bias", false, true},
    {"mixer.out_proj.weight", true, false}, {"norm.weight", false, true},
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
  auto add = [&](std::string name, std::vector<int64_t> shape, bool decay, bool fp32_read) {
    ParamTensor t;
    t.name = std::move(name);
    t.numel = product(shape);
    t.shape = std::move(shape);
    t.offset = total_;
    t.weight_decay = decay;
    t.fp32_read = fp32_read;
    total_ += t.numel;
    tensors_.push_back(std::move(t));
  };
  embedding_offset_ = total_;
  add("backbone.embedding.weight", {config_.padded_vocab(), config_.d_model}, false, true);
  for (int i = 0; i < config_.n_layer; ++i) {
    layer_offsets_.push_back(total_);
    const std::string prefix = "backbone.layers." + std::to_string(i) + ".";
    for (int k = 0; k < kCount; ++k) {
      add(prefix + kLayerSpecs[k].suffix, layer_tensor_shape(config_, k),
          kLayerSpecs[k].weight_decay, kLayerSpecs[k].fp32_read);
    }
  }
  layer_numel_ = (total_ - layer_offsets_.front()) / config_.n_layer;
  norm_f_offset_ = total_;
  add("backbone.norm_f.weight", {config_.d_model}, false, true);
}

const ParamTensor* ParamLayout::find(const std::string& name) const {
  for (const ParamTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

LayerOffsets ParamLayout::layer_offsets(int i) const {
  // Tensors of layer i follow the embedding tensor, kCount per layer.
  const ParamTensor* t = &tensors_[1 + static_cast<size_t>(i) * kCount];
  auto at = [&](int k) { return t[k].offset; };
  return {at(kALog),  at(kD),       at(kInProj),  at(kConvW),   at(kConvB),
          at(kXProj), at(kDtProjW), at(kDtProjB), at(kOutProj), at(kNorm)};
}

LayerView ParamLayout::layer(float* buffer, int i) const {
  const LayerOffsets o = layer_offsets(i);
  return {buffer + o.A_log,    buffer + o.D,      buffer + o.in_proj,   buffer + o.conv_w,
          buffer + o.conv_b,   buffer + o.x_proj, buffer + o.dt_proj_w, buffer + o.dt_proj_b,
          buffer + o.out_proj, buffer + o.norm};
}

namespace {

// One tensor's InitFill, without its destination: design.md §1, tensor k of a layer.
InitFill layer_tensor_init(const ModelConfig& c, int k) {
  InitFill f;
  f.kind = InitKind::Uniform;
  switch (k) {
    case kALog:
      f.kind = InitKind::LogIndex;
      f.period = c.d_state;
      break;
    case kD:
    case kNorm:
      f.kind = InitKind::Constant;
      f.value = 1.0;
      break;
    case kInProj:
      f.value = 1.0 / std::sqrt(double(c.d_model));
      break;
    case kConvW:
    case kConvB:
      f.value = 1.0 / std::sqrt(double(c.d_conv));
      break;
    case kXProj:
      f.value = 1.0 / std::sqrt(double(c.d_inner()));
      break;
    case kDtProjW:
      f.value = 1.0 / std::sqrt(double(c.rank()));
      break;
    case kDtProjB:
      // dt log-uniform in [1e-3, 1e-1], at least 1e-4; the bias is its inverse softplus.
      f.kind = InitKind::InvSoftplus;
      f.log_lo = std::log(1e-3);
      f.log_hi = std::log(1e-1);
      f.floor = 1e-4;
      break;
    default:  // kOutProj
      f.value = 1.0 / std::sqrt(double(c.d_inner())) / std::sqrt(double(c.n_layer));
  }
  return f;
}

std::vector<InitFill> init_fills(const ParamLayout& layout, float* params, uint64_t seed) {
  const ModelConfig& c = layout.config();
  const std::vector<ParamTensor>& tensors = layout.tensors();
  std::vector<InitFill> fills(tensors.size());
  fills.front().kind = InitKind::Normal;  // the embedding
  fills.front().value = 0.02;
  for (size_t t = 1; t + 1 < tensors.size(); ++t) {
    fills[t] = layer_tensor_init(c, int((t - 1) % kCount));
  }
  fills.back().kind = InitKind::Constant;  // norm_f
  fills.back().value = 1.0;
  for (size_t t = 0; t < tensors.size(); ++t) {
    fills[t].dst = params + tensors[t].offset;
    fills[t].n = tensors[t].numel;
    fills[t].seed = seed;
    fills[t].stream = t;
  }
  return fills;
}

}  // namespace

void init_params(const ParamLayout& layout, float* params, uint64_t seed, Backend& backend) {
  for (const InitFill& f : init_fills(layout, params, seed)) backend.init_fill(f);
}

void init_params(const ParamLayout& layout, float* params, uint64_t seed) {
  for (const InitFill& f : init_fills(layout, params, seed)) cpu::init_fill(f);
}

}  // namespace mamba
