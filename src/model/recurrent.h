// Mamba's recurrent mode for generation: per layer a conv state [d_inner, d_conv - 1] and an SSM
// state [d_inner, d_state], advanced one token at a time in O(1) work per token. Produces the same
// logits as the full (parallel) forward at every position.
#pragma once
#include <cstdint>
#include <vector>

#include "model/params.h"
#include "model/sampler.h"

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

// Continues prompt (at least one token) with up to max_tokens sampled tokens, stopping early at
// stop_token (not included); returns the new tokens only.
std::vector<int32_t> generate(const ParamLayout& layout, const float* params,
                              const std::vector<int32_t>& prompt, int max_tokens,
                              int32_t stop_token, const SamplerSettings& sampling, Rng& rng);

}  // namespace mamba
