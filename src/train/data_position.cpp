#include "train/data_position.h"

#include "util/error.h"

namespace mamba {

namespace {

std::string names_of(const std::vector<std::string>& names) {
  std::string list;
  for (const std::string& name : names) list += (list.empty() ? "" : ", ") + name;
  return "[" + list + "]";
}

}  // namespace

void record_position(const std::vector<DataSource>& sources,
                     const std::vector<LoaderPosition>& positions, TrainerState& state) {
  state.loader_sources.clear();
  if (!is_mixture(sources)) {
    state.loader_epoch = positions[0].epoch;
    state.loader_sample = positions[0].sample;
    return;
  }
  state.loader_epoch = state.loader_sample = 0;
  for (size_t s = 0; s < sources.size(); ++s) {
    state.loader_sources.push_back({sources[s].name, positions[s].epoch, positions[s].sample});
  }
}

std::vector<LoaderPosition> recorded_position(const std::vector<DataSource>& sources,
                                              const TrainerState& state,
                                              const std::string& checkpoint) {
  if (!is_mixture(sources)) {
    if (state.loader_sources.empty()) return {{state.loader_epoch, state.loader_sample}};
    std::vector<std::string> saved;
    for (const SourcePosition& p : state.loader_sources) saved.push_back(p.name);
    throw_error("training error: checkpoint ", checkpoint, " was written by a run on the mixture ",
                names_of(saved), ", but data.train is the glob ", sources[0].path,
                ": resume with that mixture, or start a new run in another checkpoint.dir "
                "(model.init_from keeps the weights)");
  }
  std::vector<std::string> wanted, saved;
  for (const DataSource& s : sources) wanted.push_back(s.name);
  for (const SourcePosition& p : state.loader_sources) saved.push_back(p.name);
  std::vector<LoaderPosition> positions;
  for (const DataSource& s : sources) {
    for (const SourcePosition& p : state.loader_sources) {
      if (p.name == s.name) positions.push_back({p.epoch, p.sample});
    }
  }
  if (positions.size() != sources.size() || saved.size() != sources.size()) {
    throw_error("training error: checkpoint ", checkpoint, " was written by a run on ",
                saved.empty() ? "a glob" : "the mixture " + names_of(saved),
                ", but data.train is the mixture ", names_of(wanted),
                ": resume with the same sources, or start a new run in another checkpoint.dir "
                "(model.init_from keeps the weights)");
  }
  return positions;
}

std::vector<std::pair<std::string, int64_t>> source_tokens(const std::vector<DataSource>& sources,
                                                           const std::vector<uint64_t>& drawn,
                                                           int seq_len) {
  std::vector<std::pair<std::string, int64_t>> tokens;
  if (!is_mixture(sources)) return tokens;
  for (size_t s = 0; s < sources.size(); ++s) {
    tokens.emplace_back(sources[s].name, int64_t(drawn[s]) * seq_len);
  }
  return tokens;
}

}  // namespace mamba
