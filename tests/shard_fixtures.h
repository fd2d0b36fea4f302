// Token shards written directly, for tests that need data without running `mamba prepare`.
#pragma once
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"

namespace mamba::test {

// Lists (or re-lists) a finished shard in its directory's manifest, as prepare would.
inline void add_to_manifest(const ShardInfo& info) {
  const std::string dir = directory_of(info.path);
  Manifest m;
  if (std::filesystem::exists(manifest_path(dir))) m = read_manifest(dir);
  const ManifestShard entry = describe_shard(info);
  m.shards.erase(std::remove_if(m.shards.begin(), m.shards.end(),
                                [&](const ManifestShard& e) { return e.file == entry.file; }),
                 m.shards.end());
  m.shards.push_back(entry);
  write_manifest(dir, m);
}

inline ShardInfo write_shard(const std::string& path, const ShardInfo& attrs,
                             const std::vector<int32_t>& tokens, int documents = 1) {
  ShardWriter writer(path, attrs);
  writer.append(tokens.data(), tokens.size());
  for (int d = 0; d < documents; ++d) writer.end_document();
  const ShardInfo info = writer.finish();
  add_to_manifest(info);
  return info;
}

// `batches` global batches as `ranks` draw them together: per batch, rank 0's rows, then rank
// 1's, ...
inline std::vector<std::vector<int32_t>> global_batches(
    std::vector<std::unique_ptr<TokenLoader>>& ranks, int seq_len, int batches) {
  std::vector<std::vector<int32_t>> out;
  for (int b = 0; b < batches; ++b) {
    std::vector<int32_t> batch;
    for (auto& loader : ranks) {
      std::vector<int32_t> rows(size_t(loader->rows()) * (seq_len + 1));
      loader->next(rows.data());
      batch.insert(batch.end(), rows.begin(), rows.end());
    }
    out.push_back(batch);
  }
  return out;
}

}  // namespace mamba::test
