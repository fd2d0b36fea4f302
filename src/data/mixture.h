// A training mixture: named sources of token shards, each drawn with a share set by its weight.
//
// Which source serves global sample n is a pure function of how many samples each source has
// served before it: the source whose share of n + 1 samples it is furthest behind (weight x
// (n + 1) - drawn, the largest; ties to the earlier source). So the schedule needs no random
// numbers, is the same on every rank and world size, keeps every source within one sample of its
// exact share at every n, and is resumed from the per-source counts alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace mamba {

struct DataSource {
  std::string name;  // empty for a plain glob (one source, no mixture)
  std::string path;  // glob of HDF5 token shards
  double weight = 1.0;

  bool operator==(const DataSource& o) const {
    return name == o.name && path == o.path && weight == o.weight;
  }
  bool operator!=(const DataSource& o) const { return !(*this == o); }
};

// True for a list of named sources; false for one unnamed source (a plain glob).
inline bool is_mixture(const std::vector<DataSource>& sources) {
  return !(sources.size() == 1 && sources[0].name.empty());
}

// How a source is named in messages: its glob, and its name in a mixture.
std::string describe(const DataSource& source);

// The sources of a mixture feed one model, so their ids must mean the same tokens: throws unless
// their shards (the first of each, in the same order) agree on vocab_size, token type, eos_id
// and split.
void check_sources_agree(const std::vector<DataSource>& sources,
                         const std::vector<ShardInfo>& first_shards);

class MixtureSchedule {
 public:
  // Weights must be finite and positive (throws mamba::Error otherwise); they need not sum to 1.
  explicit MixtureSchedule(const std::vector<DataSource>& sources);
  // The source of the next sample, given the samples each source has served so far.
  size_t pick(const std::vector<uint64_t>& drawn) const;

 private:
  // Each share as an integer fraction quota_[s] / total_ (about 2^32ths): integer arithmetic
  // makes the same picks on every machine and compiler, where floating point could round (or
  // fuse a multiply-add) differently.
  std::vector<uint64_t> quota_;
  uint64_t total_ = 0;
};

}  // namespace mamba
