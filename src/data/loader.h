// Training/validation samples from token shards. A sample is a window of seq_len + 1 tokens
// (inputs and next-token targets); window i starts at token i * seq_len of the split's shards
// laid end to end (sorted by path), so every token is a target exactly once per epoch.
//
// Ordering guarantees (docs/data.md):
// - The global order is the windows of epoch 0, then of epoch 1, ...; within an epoch it is a
//   permutation fixed by (seed, epoch) alone, or the identity when shuffle is off. It does not
//   depend on the number of processes.
// - A global batch is the next global_batch samples of that order (crossing into the next epoch
//   when needed); rank r of W gets rows [r*G/W, (r+1)*G/W). So W ranks together see exactly what
//   one process would, and a run can resume on another process count and see the same data.
// - position() names the next global batch; restore() continues exactly from there.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/shard.h"

namespace mamba {

struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t sample = 0;  // index into the epoch's global order
};

class TokenLoader {
 public:
  // pattern: a glob like "data/demo/train-*.h5"; model_vocab: the model's vocab_size (shards made
  // with a larger vocab, or holding ids >= it, are refused); global_batch: samples per global
  // batch over all ranks and micro-steps; rank/world: this process's slice (world must divide
  // global_batch). Throws mamba::Error naming the file or value and the fix.
  TokenLoader(const std::string& pattern, int seq_len, int model_vocab, int global_batch, int rank,
              int world, uint64_t seed, bool shuffle);
  ~TokenLoader();
  TokenLoader(const TokenLoader&) = delete;
  TokenLoader& operator=(const TokenLoader&) = delete;

  // This rank's rows of the next global batch: rows() x (seq_len + 1) int32 tokens.
  void next(int32_t* tokens);
  LoaderPosition position() const;
  // Continues from `p` (saved by any world size); prefetched batches are discarded.
  void restore(const LoaderPosition& p);

  int rows() const { return global_batch_ / world_; }
  int64_t samples_per_epoch() const { return windows_; }
  int64_t total_tokens() const { return starts_.back(); }

 private:
  struct Batch {
    LoaderPosition position;
    std::vector<int32_t> tokens;
    std::exception_ptr error;
  };

  LoaderPosition advance(LoaderPosition p, uint64_t samples) const;
  int64_t window_at(const LoaderPosition& p);
  void read_window(int64_t window, int32_t* out);
  ShardReader& reader(size_t shard);
  void fill(const LoaderPosition& p, std::vector<int32_t>& tokens);
  void start_worker();
  void stop_worker();
  void work();

  std::string pattern_;
  int seq_len_, model_vocab_, global_batch_, rank_, world_;
  uint64_t seed_;
  bool shuffle_;
  std::vector<ShardInfo> shards_;
  std::vector<int64_t> starts_;  // starts_[k]: first token of shard k; back(): total tokens
  int64_t windows_ = 0;

  // Used by the worker thread only (or while it is stopped).
  uint64_t order_epoch_ = UINT64_MAX;
  std::vector<uint32_t> order_;  // the epoch's permutation of window indices
  struct OpenShard {
    size_t shard;
    uint64_t last_use;
    std::unique_ptr<ShardReader> reader;
  };
  std::vector<OpenShard> open_;  // a few open files, least recently used closed first
  uint64_t uses_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  LoaderPosition next_position_;     // of the batch next() returns
  LoaderPosition produce_position_;  // of the batch the worker makes next
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace mamba
