#include "train/evaluate.h"

#include <algorithm>

namespace mamba {

void split_rows(const int32_t* rows, int count, int seq_len, std::vector<int32_t>& inputs,
                std::vector<int32_t>& targets) {
  inputs.resize(int64_t(count) * seq_len);
  targets.resize(int64_t(count) * seq_len);
  for (int r = 0; r < count; ++r) {
    const int32_t* row = rows + int64_t(r) * (seq_len + 1);
    std::copy(row, row + seq_len, inputs.begin() + int64_t(r) * seq_len);
    std::copy(row + 1, row + seq_len + 1, targets.begin() + int64_t(r) * seq_len);
  }
}

std::optional<double> mean_loss(MambaLM& model, TokenLoader& loader, int micro, int seq_len,
                                int batches, const std::function<bool()>& interrupted) {
  std::vector<int32_t> rows(int64_t(micro) * (seq_len + 1)), inputs, targets;
  loader.rewind();
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    if (interrupted && interrupted()) return std::nullopt;
    loader.next(rows.data());
    split_rows(rows.data(), micro, seq_len, inputs, targets);
    sum += model.evaluate(inputs.data(), targets.data(), micro, seq_len);
  }
  return sum / batches;
}

std::vector<std::unique_ptr<TokenLoader>> open_validation(const std::vector<DataSource>& val,
                                                          int seq_len, int model_vocab, int batch,
                                                          int rank, int world,
                                                          size_t max_open_files) {
  const size_t each = std::max<size_t>(1, max_open_files / std::max<size_t>(1, val.size()));
  std::vector<std::unique_ptr<TokenLoader>> loaders;
  for (const DataSource& s : val) {
    loaders.push_back(std::make_unique<TokenLoader>(s.path, seq_len, model_vocab, batch, rank,
                                                    world, 0, false, each));
  }
  std::vector<ShardInfo> first_shards;
  for (const auto& loader : loaders) first_shards.push_back(loader->first_shard());
  check_sources_agree(val, first_shards);
  return loaders;
}

double mixture_mean(const std::vector<DataSource>& sources, const std::vector<double>& losses) {
  double sum = 0.0, weights = 0.0;
  for (size_t s = 0; s < sources.size(); ++s) {
    sum += sources[s].weight * losses[s];
    weights += sources[s].weight;
  }
  return sum / weights;
}

}  // namespace mamba
