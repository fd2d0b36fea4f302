#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace mamba {

int32_t sample_token(const float* logits, int vocab_size, const SamplerSettings& s, Rng& rng) {
  if (s.temperature <= 0.0f) {
    return int32_t(std::max_element(logits, logits + vocab_size) - logits);
  }
  std::vector<int32_t> ids(vocab_size);
  std::iota(ids.begin(), ids.end(), 0);
  int keep = vocab_size;
  if (s.top_k > 0 && s.top_k < vocab_size) {
    keep = s.top_k;
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  }
  float max_logit = logits[ids[0]];
  for (int i = 0; i < keep; ++i) max_logit = std::max(max_logit, logits[ids[i]]);
  std::vector<double> weights(keep);
  double total = 0.0;
  for (int i = 0; i < keep; ++i) {
    weights[i] = std::exp((double(logits[ids[i]]) - max_logit) / s.temperature);
    total += weights[i];
  }
  double u = rng.uniform() * total;
  for (int i = 0; i < keep; ++i) {
    u -= weights[i];
    if (u < 0.0) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace mamba
