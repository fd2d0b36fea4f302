// How ZeRO-1 (dist.shard_optimizer) cuts the flat parameter buffer among the ranks of a
// data-parallel run. The buffer is split into buckets at fixed places: buckets of about
// dist.bucket_mb, each a multiple of the world size long, from the start of the buffer, then a
// tail of fewer than world floats. Every bucket is cut into world equal slices, and rank r owns
// slice r of every bucket (of the tail, the element r when there is one). A bucket is one
// reduce-scatter of the gradients and one all-gather of the weights, so the reduce-scatter can
// start as soon as backward has finished the bucket, as the all-reduce does unsharded.
// A rank keeps its AdamW moments packed: its slices one after another, in buffer order.
#pragma once
#include <cstdint>
#include <vector>

namespace mamba {

struct ShardBucket {
  int64_t begin = 0, end = 0;  // [begin, end) in floats of the flat buffer
  int64_t slice = 0;           // floats per rank; world * slice > end - begin for the tail only
};

// [begin, begin + count) of the flat buffer, held at packed offset `packed`.
struct ShardRange {
  int64_t begin = 0, packed = 0, count = 0;
};

class ShardMap {
 public:
  // n: floats of the buffer; bucket_floats: the wanted bucket size (rounded to the world size).
  ShardMap(int64_t n, int world, int rank, int64_t bucket_floats);

  int world() const { return world_; }
  int rank() const { return rank_; }
  int64_t total() const { return n_; }
  const std::vector<ShardBucket>& buckets() const { return buckets_; }
  // Rank q's slice of bucket b, in floats of the flat buffer (empty: begin == end).
  ShardRange part(const ShardBucket& b, int q) const;
  // Rank q's slices in buffer order, empty ones left out.
  std::vector<ShardRange> ranges(int q) const;
  const std::vector<ShardRange>& ranges() const { return mine_; }
  // Floats rank q holds.
  int64_t size(int q) const;

 private:
  int64_t n_;
  int world_, rank_;
  std::vector<ShardBucket> buckets_;
  std::vector<ShardRange> mine_;
};

}  // namespace mamba
