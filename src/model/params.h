// Parameter layout: every parameter of the model lives in one contiguous fp32 buffer, viewed per
// tensor under the reference (mamba_ssm) names. Gradients and AdamW moments use buffers with the
// same layout, so one all-reduce, one optimizer pass and one checkpoint write cover everything.
// Order in the buffer: embedding, then layer 0 .. n_layer-1 (each layer contiguous, so a layer's
// gradients form one slice for bucketed reduction), then norm_f.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/backend.h"
#include "model/config.h"

namespace mamba {

struct ParamTensor {
  std::string name;            // e.g. backbone.layers.3.mixer.in_proj.weight
  std::vector<int64_t> shape;  // PyTorch shape (conv1d.weight is [d_inner, 1, d_conv])
  int64_t offset = 0;          // in floats, from the start of the buffer
  int64_t numel = 0;
  bool weight_decay =
      false;  // design.md §1: only in_proj, conv1d, x_proj, dt_proj, out_proj weights
  // The model reads it in fp32 as it is (all but the weights of the four GEMMs, which it reads
  // as their compute copy; the tied embedding is both).
  bool fp32_read = false;
};

// One layer's tensors inside a buffer with this layout (parameters, gradients, ...): pointers
// (LayerView), or offsets in floats from the start of the buffer (LayerOffsets).
template <typename T>
struct LayerTensors {
  T A_log;      // [d_inner, d_state]
  T D;          // [d_inner]
  T in_proj;    // [2 * d_inner, d_model]
  T conv_w;     // [d_inner, d_conv]
  T conv_b;     // [d_inner]
  T x_proj;     // [rank + 2 * d_state, d_inner]
  T dt_proj_w;  // [d_inner, rank]
  T dt_proj_b;  // [d_inner]
  T out_proj;   // [d_model, d_inner]
  T norm;       // [d_model]
};
using LayerView = LayerTensors<float*>;
using LayerOffsets = LayerTensors<int64_t>;

class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& config);

  const ModelConfig& config() const { return config_; }
  const std::vector<ParamTensor>& tensors() const { return tensors_; }
  int64_t total() const { return total_; }
  // nullptr when the name is not a parameter of this model.
  const ParamTensor* find(const std::string& name) const;

  float* embedding(float* buffer) const { return buffer + embedding_offset_; }
  float* norm_f(float* buffer) const { return buffer + norm_f_offset_; }
  LayerView layer(float* buffer, int i) const;
  LayerOffsets layer_offsets(int i) const;
  // [begin, end) in floats of layer i's slice of the buffer.
  int64_t layer_begin(int i) const { return layer_offsets_[i]; }
  int64_t layer_end(int i) const { return layer_offsets_[i] + layer_numel_; }

 private:
  ModelConfig config_;
  std::vector<ParamTensor> tensors_;
  std::vector<int64_t> layer_offsets_;
  int64_t layer_numel_ = 0;
  int64_t embedding_offset_ = 0, norm_f_offset_ = 0, total_ = 0;
};

// design.md §1 initialisation of `params` (a buffer with this layout on the backend's device),
// one Backend::init_fill per tensor, queued on the backend: the same bits for the same seed on
// every machine and backend. Tensor k of layout.tensors() draws from random stream k.
void init_params(const ParamLayout& layout, float* params, uint64_t seed, Backend& backend);
// The same into host memory, through the CPU kernel.
void init_params(const ParamLayout& layout, float* params, uint64_t seed);

}  // namespace mamba
