#include "data/loader.h"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "util/error.h"
#include "util/rng.h"

namespace mamba {

namespace {

constexpr size_t kPrefetchBatches = 2;
constexpr size_t kMaxOpenShards = 32;

}  // namespace

TokenLoader::TokenLoader(const std::string& pattern, int seq_len, int model_vocab, int global_batch,
                         int rank, int world, uint64_t seed, bool shuffle)
    : pattern_(pattern),
      seq_len_(seq_len),
      model_vocab_(model_vocab),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      seed_(seed),
      shuffle_(shuffle) {
  if (seq_len < 1) throw_error("data error: seq_len = ", seq_len, ": expected a positive integer");
  if (model_vocab < 1) {
    throw_error("data error: model vocab_size = ", model_vocab, ": expected a positive integer");
  }
  if (world < 1 || rank < 0 || rank >= world) {
    throw_error("data error: rank ", rank, " of world size ", world,
                ": expected 0 <= rank < world size");
  }
  if (global_batch < 1 || global_batch % world != 0) {
    throw_error("data error: global batch of ", global_batch, " samples cannot be split over ",
                world, " ranks: make it a positive multiple of the number of ranks");
  }
  shards_ = check_shards(pattern, model_vocab);
  starts_.push_back(0);
  for (const ShardInfo& s : shards_) starts_.push_back(starts_.back() + s.num_tokens);
  windows_ = total_tokens() > 0 ? (total_tokens() - 1) / seq_len : 0;
  if (windows_ == 0) {
    throw_error("data error: the shards matching '", pattern, "' hold ", total_tokens(),
                " tokens, fewer than one window of seq_len + 1 = ", seq_len + 1,
                " tokens: use a smaller seq_len or prepare more text");
  }
  if (shuffle_ && uint64_t(windows_) > UINT32_MAX) {
    throw_error("data error: '", pattern, "' holds ", windows_, " windows of ", seq_len,
                " tokens, more than the 2^32 the shuffle supports: split the corpus into runs");
  }
  start_worker();
}

TokenLoader::~TokenLoader() {
  stop_worker();
}

LoaderPosition TokenLoader::advance(LoaderPosition p, uint64_t samples) const {
  p.sample += samples;
  p.epoch += p.sample / uint64_t(windows_);
  p.sample %= uint64_t(windows_);
  return p;
}

int64_t TokenLoader::window_at(const LoaderPosition& p) {
  if (!shuffle_) return int64_t(p.sample);
  if (order_epoch_ != p.epoch) {
    // Fisher-Yates driven by a generator seeded from (seed, epoch) only: every rank and every
    // world size computes the same permutation.
    order_.resize(size_t(windows_));
    std::iota(order_.begin(), order_.end(), 0u);
    Rng rng(seed_ ^ splitmix64(p.epoch));
    for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.below(i + 1)]);
    order_epoch_ = p.epoch;
  }
  return order_[size_t(p.sample)];
}

ShardReader& TokenLoader::reader(size_t shard) {
  ++uses_;
  for (OpenShard& o : open_) {
    if (o.shard == shard) {
      o.last_use = uses_;
      return *o.reader;
    }
  }
  if (open_.size() >= kMaxOpenShards) {
    open_.erase(std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) {
      return a.last_use < b.last_use;
    }));
  }
  open_.push_back({shard, uses_, std::make_unique<ShardReader>(shards_[shard].path)});
  return *open_.back().reader;
}

void TokenLoader::read_window(int64_t window, int32_t* out) {
  int64_t offset = window * seq_len_;
  int64_t remaining = seq_len_ + 1;
  // A window may run from the end of one shard into the next.
  size_t k = size_t(std::upper_bound(starts_.begin(), starts_.end(), offset) - starts_.begin()) - 1;
  while (remaining > 0) {
    const int64_t take = std::min(remaining, starts_[k + 1] - offset);
    ShardReader& shard = reader(k);
    shard.read(offset - starts_[k], take, out);
    const int64_t limit = std::min<int64_t>(model_vocab_, shards_[k].vocab_size);
    for (int64_t i = 0; i < take; ++i) {
      if (out[i] < 0 || out[i] >= limit) {
        throw_error("data error: shard ", shards_[k].path, " holds token ", out[i],
                    " >= vocab_size ", limit, " (at token ", offset - starts_[k] + i,
                    "): re-run prepare with the model's tokenizer");
      }
    }
    out += take;
    offset += take;
    remaining -= take;
    ++k;
  }
}

void TokenLoader::fill(const LoaderPosition& p, std::vector<int32_t>& tokens) {
  const int row_tokens = seq_len_ + 1;
  tokens.resize(size_t(rows()) * row_tokens);
  for (int row = 0; row < rows(); ++row) {
    const LoaderPosition sample = advance(p, uint64_t(rank_) * rows() + row);
    read_window(window_at(sample), tokens.data() + size_t(row) * row_tokens);
  }
}

void TokenLoader::work() {
  while (true) {
    LoaderPosition p;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < kPrefetchBatches; });
      if (stop_) return;
      p = produce_position_;
    }
    Batch batch;
    batch.position = p;
    try {
      fill(p, batch.tokens);
    } catch (...) {
      batch.error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (stop_) return;
    const bool failed = batch.error != nullptr;
    ready_.push_back(std::move(batch));
    produce_position_ = advance(p, uint64_t(global_batch_));
    cv_.notify_all();
    if (failed) return;  // next() rethrows; there is nothing sensible to read after it
  }
}

void TokenLoader::start_worker() {
  stop_ = false;
  worker_ = std::thread([this] { work(); });
}

void TokenLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void TokenLoader::next(int32_t* tokens) {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !ready_.empty(); });
  Batch& batch = ready_.front();
  if (batch.error) std::rethrow_exception(batch.error);  // stays queued: every call reports it
  std::memcpy(tokens, batch.tokens.data(), batch.tokens.size() * sizeof(int32_t));
  next_position_ = advance(batch.position, uint64_t(global_batch_));
  ready_.pop_front();
  cv_.notify_all();
}

LoaderPosition TokenLoader::position() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_position_;
}

void TokenLoader::restore(const LoaderPosition& p) {
  if (p.sample >= uint64_t(windows_)) {
    throw_error("data error: cannot restore the loader of '", pattern_, "' to sample ", p.sample,
                " of epoch ", p.epoch, ": an epoch has only ", windows_,
                " samples; resume with the same data and seq_len");
  }
  stop_worker();
  ready_.clear();
  next_position_ = produce_position_ = p;
  start_worker();
}

}  // namespace mamba
