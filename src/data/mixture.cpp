#include "data/mixture.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace mamba {

std::string describe(const DataSource& s) {
  return s.name.empty() ? "'" + s.path + "'" : "source '" + s.name + "' ('" + s.path + "')";
}

void check_sources_agree(const std::vector<DataSource>& sources,
                         const std::vector<ShardInfo>& first_shards) {
  const ShardInfo& a = first_shards.front();
  const auto type = [](int bytes) { return bytes == 2 ? "uint16" : "uint32"; };
  for (size_t s = 1; s < sources.size(); ++s) {
    const ShardInfo& b = first_shards[s];
    const auto disagree = [&](const char* what, const auto& mine, const auto& theirs) {
      throw_error("data error: ", describe(sources[s]), " has ", what, " ", mine, " (", b.path,
                  ") but ", describe(sources[0]), " has ", theirs, " (", a.path,
                  "): the sources of a mixture must be prepared with one tokenizer; re-run "
                  "prepare for ",
                  describe(sources[s]), " with the tokenizer of the others");
    };
    if (b.vocab_size != a.vocab_size) disagree("vocab_size", b.vocab_size, a.vocab_size);
    if (b.token_bytes != a.token_bytes) {
      disagree("token type", type(b.token_bytes), type(a.token_bytes));
    }
    if (b.eos_id != a.eos_id) disagree("eos_id", b.eos_id, a.eos_id);
    if (b.split != a.split) disagree("split", b.split, a.split);
  }
}

MixtureSchedule::MixtureSchedule(const std::vector<DataSource>& sources) {
  if (sources.empty()) throw_error("data error: a mixture needs at least one source");
  double sum = 0.0;
  for (const DataSource& s : sources) {
    if (!std::isfinite(s.weight) || s.weight <= 0.0) {
      throw_error("data error: ", describe(s), " has weight ", s.weight,
                  ": expected a finite number > 0");
    }
    sum += s.weight;
  }
  for (const DataSource& s : sources) {
    // At least 1, so that no source is starved by rounding.
    quota_.push_back(std::max<uint64_t>(1, uint64_t(std::llround(s.weight / sum * 4294967296.0))));
    total_ += quota_.back();
  }
}

// The source furthest behind its share: the largest quota x (n + 1) - drawn x total, exactly
// (below 2^96 for any n < 2^64, so 128 bits hold it).
size_t MixtureSchedule::pick(const std::vector<uint64_t>& drawn) const {
  unsigned __int128 n = 0;
  for (uint64_t d : drawn) n += d;
  size_t best = 0;
  __int128 best_deficit = 0;
  for (size_t s = 0; s < quota_.size(); ++s) {
    const __int128 deficit = __int128(quota_[s]) * __int128(n + 1) - __int128(drawn[s]) * total_;
    if (s == 0 || deficit > best_deficit) {
      best_deficit = deficit;
      best = s;
    }
  }
  return best;
}

}  // namespace mamba
