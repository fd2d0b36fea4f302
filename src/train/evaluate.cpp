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
  loader.restore(LoaderPosition{});
  double sum = 0.0;
  for (int i = 0; i < batches; ++i) {
    if (interrupted && interrupted()) return std::nullopt;
    loader.next(rows.data());
    split_rows(rows.data(), micro, seq_len, inputs, targets);
    sum += model.evaluate(inputs.data(), targets.data(), micro, seq_len);
  }
  return sum / batches;
}

}  // namespace mamba
