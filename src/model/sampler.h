// Picks the next token from logits: greedy (temperature 0), temperature sampling, optionally
// restricted to the top_k most likely tokens. Only ids below vocab_size are candidates (the
// padded tail of the embedding is never produced).
#pragma once
#include <cstdint>

#include "util/rng.h"

namespace mamba {

struct SamplerSettings {
  float temperature = 1.0f;  // 0: greedy
  int top_k = 0;             // 0: all tokens
};

int32_t sample_token(const float* logits, int vocab_size, const SamplerSettings& s, Rng& rng);

}  // namespace mamba
