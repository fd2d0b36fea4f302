// Small models and token batches for model tests.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/mamba_lm.h"
#include "util/rng.h"

namespace mamba::test {

inline ModelConfig small_config(int d_model, int n_layer, int vocab_size) {
  ModelConfig c;
  c.d_model = d_model;
  c.n_layer = n_layer;
  c.vocab_size = vocab_size;
  return c;
}

// `count` token ids below vocab_size, reproducible from the seed.
inline std::vector<int32_t> random_tokens(int64_t count, int vocab_size, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> tokens(count);
  for (auto& t : tokens) t = int32_t(rng.below(uint64_t(vocab_size)));
  return tokens;
}

// Initialised (design.md §1) weights, uploaded to the model; returns the host copy.
inline std::vector<float> init_model(MambaLM& model, uint64_t seed) {
  std::vector<float> params(model.layout().total());
  init_params(model.layout(), params.data(), seed);
  model.upload_params(params);
  return params;
}

}  // namespace mamba::test
