// Mamba's recurrent mode for generation: per layer a conv state [d_inner, d_conv - 1] and an SSM
// state [d_inner, d_state], advanced one token at a time in O(1) work per token. Produces the same
// logits as the full (parallel) forward at every position.
#pragma once
#include <cstdint>
#include <vector>

#include "model/params.h"

namespace mamba {

class RecurrentLM {
 public:
  // params must outlive this object and keep the layout's order.
  RecurrentLM(const ParamLayout& layout, const float* params);

  // Back to the empty prefix (all states zero).
  void reset();
  // Feeds one token; returns the logits [padded_vocab] for the next one, valid until the next call.
  const float* step(int32_t token);

 private:
  const ParamLayout& layout_;
  float* params_;  // read only; LayerView hands out mutable pointers
  std::vector<std::vector<float>> conv_state_, ssm_state_, A_;
  // One token's activations, reused every step.
  std::vector<float> hidden_, residual_, normed_, xz_, xc_, xdbl_, delta_, y_, logits_;
  float rstd_ = 0.0f;
};

}  // namespace mamba
