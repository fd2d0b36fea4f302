// Turning loader rows into model inputs, and the mean loss over a fixed set of batches (used by
// the trainer's periodic eval and by `mamba eval`).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "data/loader.h"
#include "model/mamba_lm.h"

namespace mamba {

// Rows of seq_len + 1 tokens -> inputs (the first seq_len) and targets (the last seq_len).
void split_rows(const int32_t* rows, int count, int seq_len, std::vector<int32_t>& inputs,
                std::vector<int32_t>& targets);

// Mean cross-entropy over `batches` micro-batches of `micro` rows, read from the loader's start
// (it is restarted first), so evals at different steps see the same tokens. `interrupted` is
// asked between batches (a stop signal during a long eval); nullopt when it said yes.
std::optional<double> mean_loss(MambaLM& model, TokenLoader& loader, int micro, int seq_len,
                                int batches, const std::function<bool()>& interrupted = {});

}  // namespace mamba
