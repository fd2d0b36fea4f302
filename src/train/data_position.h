// The training data's position in a checkpoint's TrainerState: loader_epoch and loader_sample
// for a plain glob (as checkpoints always held), each source's position by name for a mixture.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "data/mixture.h"
#include "train/checkpoint.h"

namespace mamba {

void record_position(const std::vector<DataSource>& sources,
                     const std::vector<LoaderPosition>& positions, TrainerState& state);

// The positions `state` holds for `sources`, in their order. A checkpoint of other sources (a
// glob for a mixture, a mixture for a glob, other names) is an error naming `checkpoint`.
std::vector<LoaderPosition> recorded_position(const std::vector<DataSource>& sources,
                                              const TrainerState& state,
                                              const std::string& checkpoint);

// A mixture's tokens drawn per source (samples x seq_len), for the log; empty for a plain glob.
std::vector<std::pair<std::string, int64_t>> source_tokens(const std::vector<DataSource>& sources,
                                                           const std::vector<uint64_t>& drawn,
                                                           int seq_len);

}  // namespace mamba
