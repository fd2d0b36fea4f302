#include "dist/shard_map.h"

#include <algorithm>

#include "util/error.h"

namespace mamba {

namespace {

// A bucket is one collective of slice floats per rank: MPI counts are int.
constexpr int64_t kMaxSlice = int64_t{1} << 28;

}  // namespace

ShardMap::ShardMap(int64_t n, int world, int rank, int64_t bucket_floats)
    : n_(n), world_(world), rank_(rank) {
  if (world < 1 || rank < 0 || rank >= world || n < world) {
    throw_error("distributed error: no shard map for rank ", rank, " of ", world);
  }
  const int64_t slice = std::clamp<int64_t>(bucket_floats / world, 1, kMaxSlice);
  const int64_t body = n - n % world;
  for (int64_t begin = 0; begin < body; begin += slice * world) {
    const int64_t end = std::min(body, begin + slice * world);
    buckets_.push_back({begin, end, (end - begin) / world});
  }
  if (body < n) buckets_.push_back({body, n, 1});
  mine_ = ranges(rank);
}

ShardRange ShardMap::part(const ShardBucket& b, int q) const {
  const int64_t begin = std::min(b.end, b.begin + q * b.slice);
  const int64_t end = std::min(b.end, begin + b.slice);
  return {begin, 0, end - begin};
}

std::vector<ShardRange> ShardMap::ranges(int q) const {
  std::vector<ShardRange> out;
  int64_t packed = 0;
  for (const ShardBucket& b : buckets_) {
    ShardRange r = part(b, q);
    if (r.count == 0) continue;
    r.packed = packed;
    packed += r.count;
    out.push_back(r);
  }
  return out;
}

int64_t ShardMap::size(int q) const {
  int64_t total = 0;
  for (const ShardBucket& b : buckets_) total += part(b, q).count;
  return total;
}

}  // namespace mamba
