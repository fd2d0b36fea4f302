// Token shards written directly, for tests that need data without running `mamba prepare`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace mamba::test {

inline ShardInfo write_shard(const std::string& path, const ShardInfo& attrs,
                             const std::vector<int32_t>& tokens, int documents = 1) {
  ShardWriter writer(path, attrs);
  writer.append(tokens.data(), tokens.size());
  for (int d = 0; d < documents; ++d) writer.end_document();
  return writer.finish();
}

}  // namespace mamba::test
