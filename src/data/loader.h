// Training/validation samples from token shards. A sample is a window of seq_len + 1 tokens
// (inputs and next-token targets); window i starts at token i * seq_len of a source's shards
// laid end to end (sorted by path), so every token is a target exactly once per epoch.
//
// Ordering guarantees (docs/data.md):
// - Each source's order is the windows of its epoch 0, then of its epoch 1, ...; within an epoch
//   it is a permutation fixed by (seed, epoch) alone, or the identity when shuffle is off. A
//   source that runs out starts its next epoch.
// - Global sample n comes from the source MixtureSchedule picks (data/mixture.h): a function of
//   the samples each source has served, so it too is independent of the number of processes. A
//   plain glob is one source that is always picked.
// - A global batch is the next global_batch samples of that order; rank r of W gets rows
//   [r*G/W, (r+1)*G/W). So W ranks together see exactly what one process would, and a run can
//   resume on another process count and see the same data.
// - positions() names the next global batch; restore() continues exactly from there.
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

#include "data/mixture.h"
#include "data/shard.h"

namespace mamba {

// A source's place in its own order.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t sample = 0;  // index into the epoch's order
};

// Shard files all of a process's loaders may keep open together: a quarter of its limit on open
// files (ulimit -n), which MPI and CUDA share, 32 to 1024.
size_t open_file_budget();

class TokenLoader {
 public:
  // sources: one unnamed source (a plain glob like "data/demo/train-*.h5") or a mixture of
  // named ones, whose shards must agree on vocab_size, token type, eos_id and split; model_vocab:
  // the model's vocab_size (shards made with a larger vocab, or holding ids >= it, are refused);
  // global_batch: samples per global batch over all ranks and micro-steps; rank/world: this
  // process's slice (world must divide global_batch); max_open_files: the most shard files it
  // keeps open at once (>= 1; the process's whole open_file_budget() when 0). Throws mamba::Error
  // naming the file or value and the fix.
  TokenLoader(const std::vector<DataSource>& sources, int seq_len, int model_vocab,
              int global_batch, int rank, int world, uint64_t seed, bool shuffle,
              size_t max_open_files = 0);
  // A plain glob.
  TokenLoader(const std::string& pattern, int seq_len, int model_vocab, int global_batch, int rank,
              int world, uint64_t seed, bool shuffle, size_t max_open_files = 0);
  ~TokenLoader();
  TokenLoader(const TokenLoader&) = delete;
  TokenLoader& operator=(const TokenLoader&) = delete;

  // This rank's rows of the next global batch: rows() x (seq_len + 1) int32 tokens.
  void next(int32_t* tokens);
  // Each source's position (in the order given) after the batches next() returned.
  std::vector<LoaderPosition> positions() const;
  // Samples each source has served, all ranks together, in the batches next() returned.
  std::vector<uint64_t> samples_drawn() const;
  // Continues from positions saved by any world size; prefetched batches are discarded.
  void restore(const std::vector<LoaderPosition>& positions);
  void rewind() { restore(std::vector<LoaderPosition>(sources_.size())); }

  int rows() const { return global_batch_ / world_; }
  int64_t samples_per_epoch(size_t source = 0) const { return sources_[source].windows; }
  int64_t total_tokens() const;  // all sources
  const ShardInfo& first_shard(size_t source = 0) const { return sources_[source].shards.front(); }
  // The most shard files it holds open at once.
  size_t max_open_files() const { return max_open_; }

 private:
  struct Source {
    DataSource spec;
    uint64_t seed;
    std::vector<ShardInfo> shards;
    std::vector<int64_t> starts;  // starts[k]: first token of shard k; back(): total tokens
    int64_t windows = 0;
    // Used by the worker thread only (or while it is stopped).
    std::vector<int32_t> open_slot;  // open_slot[k]: shard k's place in open_, or -1
    uint64_t order_epoch = UINT64_MAX;
    std::vector<uint32_t> order;  // the epoch's permutation of window indices
  };
  struct Batch {
    std::vector<uint64_t> drawn;  // per source, before this batch
    std::vector<uint64_t> after;  // and after it
    std::vector<int32_t> tokens;
    std::exception_ptr error;
  };

  Source open_source(const DataSource& spec, uint64_t seed) const;
  std::vector<uint64_t> advance(std::vector<uint64_t> drawn, int samples) const;
  int64_t window_at(Source& source, uint64_t drawn);
  void read_window(size_t source, int64_t window, int32_t* out);
  ShardReader& reader(size_t source, size_t shard);
  void fill(const std::vector<uint64_t>& drawn, std::vector<int32_t>& tokens);
  void start_worker();
  void stop_worker();
  void work();

  int seq_len_, model_vocab_, global_batch_, rank_, world_;
  bool shuffle_;
  std::vector<Source> sources_;
  MixtureSchedule schedule_;

  // Used by the worker thread only (or while it is stopped).
  struct OpenShard {
    size_t source = 0, shard = 0;
    std::unique_ptr<ShardReader> reader;
  };
  size_t max_open_;
  std::vector<OpenShard> open_;  // at most max_open_ open shards
  size_t next_slot_ = 0;         // the one reused next

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  std::vector<uint64_t> next_drawn_;     // before the batch next() returns
  std::vector<uint64_t> produce_drawn_;  // before the batch the worker makes next
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace mamba
