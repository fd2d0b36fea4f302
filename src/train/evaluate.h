// Turning loader rows into model inputs, and the mean loss over a fixed set of batches (used by
// the trainer's periodic eval and by `mamba eval`).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "data/loader.h"
#include "data/mixture.h"
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

// One loader per source of data.val (a glob is one source), in order, unshuffled, serving
// `batch` samples per global batch split over `world` ranks. Together they keep at most
// max_open_files shard files open (at least one each).
std::vector<std::unique_ptr<TokenLoader>> open_validation(const std::vector<DataSource>& val,
                                                          int seq_len, int model_vocab, int batch,
                                                          int rank, int world,
                                                          size_t max_open_files);

// The validation loss of a mixture: the sources' losses weighted by their weights (the plain
// mean when, as by default, the weights are equal).
double mixture_mean(const std::vector<DataSource>& sources, const std::vector<double>& losses);

}  // namespace mamba
