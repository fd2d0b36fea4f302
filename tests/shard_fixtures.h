// Token shards written directly, for tests that need data without running `mamba prepare`.
#pragma once
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

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

}  // namespace mamba::test
