#include "data/loader.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "util/error.h"
#include "util/rng.h"

namespace mamba {

namespace {

constexpr size_t kPrefetchBatches = 2;

// FNV-1a: a source's shuffle seed follows its name, not its place in the list.
uint64_t name_hash(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

// A reopen costs an open() (check_shards found the layout), so more open files mean faster random
// reads over many shards, but they count against the process's limit.
size_t open_file_budget() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1024;
  return std::clamp<size_t>(size_t(limit.rlim_cur / 4), 32, 1024);
}

TokenLoader::TokenLoader(const std::string& pattern, int seq_len, int model_vocab, int global_batch,
                         int rank, int world, uint64_t seed, bool shuffle, size_t max_open_files)
    : TokenLoader(std::vector<DataSource>{{"", pattern, 1.0}}, seq_len, model_vocab, global_batch,
                  rank, world, seed, shuffle, max_open_files) {}

TokenLoader::TokenLoader(const std::vector<DataSource>& sources, int seq_len, int model_vocab,
                         int global_batch, int rank, int world, uint64_t seed, bool shuffle,
                         size_t max_open_files)
    : seq_len_(seq_len),
      model_vocab_(model_vocab),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      shuffle_(shuffle),
      schedule_(sources),
      max_open_(max_open_files > 0 ? max_open_files : open_file_budget()) {
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
  const bool mixture = is_mixture(sources);
  for (const DataSource& s : sources) {
    sources_.push_back(open_source(s, mixture ? seed ^ splitmix64(name_hash(s.name)) : seed));
  }
  std::vector<ShardInfo> first_shards;
  for (const Source& s : sources_) first_shards.push_back(s.shards.front());
  check_sources_agree(sources, first_shards);
  next_drawn_.assign(sources_.size(), 0);
  produce_drawn_ = next_drawn_;
  start_worker();
}

TokenLoader::~TokenLoader() {
  stop_worker();
}

TokenLoader::Source TokenLoader::open_source(const DataSource& spec, uint64_t seed) const {
  Source s;
  s.spec = spec;
  s.seed = seed;
  s.shards = check_shards(spec.path, model_vocab_);
  s.open_slot.assign(s.shards.size(), -1);
  s.starts.push_back(0);
  for (const ShardInfo& shard : s.shards) s.starts.push_back(s.starts.back() + shard.num_tokens);
  const int64_t tokens = s.starts.back();
  s.windows = tokens > 0 ? (tokens - 1) / seq_len_ : 0;
  if (s.windows == 0) {
    throw_error("data error: the shards of ", describe(spec), " hold ", tokens,
                " tokens, fewer than one window of seq_len + 1 = ", seq_len_ + 1,
                " tokens: use a smaller seq_len or prepare more text");
  }
  if (shuffle_ && uint64_t(s.windows) > UINT32_MAX) {
    throw_error("data error: ", describe(spec), " holds ", s.windows, " windows of ", seq_len_,
                " tokens, more than the 2^32 the shuffle supports: split the corpus into runs");
  }
  return s;
}

int64_t TokenLoader::total_tokens() const {
  int64_t total = 0;
  for (const Source& s : sources_) total += s.starts.back();
  return total;
}

std::vector<uint64_t> TokenLoader::advance(std::vector<uint64_t> drawn, int samples) const {
  if (sources_.size() == 1) {
    drawn[0] += uint64_t(samples);
    return drawn;
  }
  for (int i = 0; i < samples; ++i) ++drawn[schedule_.pick(drawn)];
  return drawn;
}

int64_t TokenLoader::window_at(Source& source, uint64_t drawn) {
  const uint64_t epoch = drawn / uint64_t(source.windows);
  const uint64_t sample = drawn % uint64_t(source.windows);
  if (!shuffle_) return int64_t(sample);
  if (source.order_epoch != epoch) {
    // Fisher-Yates driven by a generator seeded from (seed, epoch) only: every rank and every
    // world size computes the same permutation.
    source.order.resize(size_t(source.windows));
    std::iota(source.order.begin(), source.order.end(), 0u);
    Rng rng(source.seed ^ splitmix64(epoch));
    for (size_t i = source.order.size() - 1; i > 0; --i) {
      std::swap(source.order[i], source.order[rng.below(i + 1)]);
    }
    source.order_epoch = epoch;
  }
  return source.order[size_t(sample)];
}

ShardReader& TokenLoader::reader(size_t source, size_t shard) {
  Source& s = sources_[source];
  if (s.open_slot[shard] >= 0) return *open_[size_t(s.open_slot[shard])].reader;
  // Slots are reused in turn: under random access as good as least-recently-used and O(1); read
  // in order, the oldest is the one done with. The old file closes before the new one opens.
  size_t slot = open_.size();
  if (slot < max_open_) {
    open_.emplace_back();
  } else {
    slot = next_slot_;
    next_slot_ = (next_slot_ + 1) % max_open_;
    OpenShard& old = open_[slot];
    if (old.reader) sources_[old.source].open_slot[old.shard] = -1;
    old.reader.reset();
  }
  open_[slot].reader = std::make_unique<ShardReader>(s.shards[shard]);  // no HDF5 for raw shards
  open_[slot].source = source;
  open_[slot].shard = shard;
  s.open_slot[shard] = int32_t(slot);
  return *open_[slot].reader;
}

void TokenLoader::read_window(size_t source, int64_t window, int32_t* out) {
  const Source& s = sources_[source];
  int64_t offset = window * seq_len_;
  int64_t remaining = seq_len_ + 1;
  // A window may run from the end of one shard into the next.
  size_t k =
      size_t(std::upper_bound(s.starts.begin(), s.starts.end(), offset) - s.starts.begin()) - 1;
  while (remaining > 0) {
    const int64_t take = std::min(remaining, s.starts[k + 1] - offset);
    ShardReader& shard = reader(source, k);
    shard.read(offset - s.starts[k], take, out);
    const int64_t limit = std::min<int64_t>(model_vocab_, s.shards[k].vocab_size);
    for (int64_t i = 0; i < take; ++i) {
      if (out[i] < 0 || out[i] >= limit) {
        throw_error("data error: shard ", s.shards[k].path, " holds token ", out[i],
                    " >= vocab_size ", limit, " (at token ", offset - s.starts[k] + i,
                    "): re-run prepare with the model's tokenizer");
      }
    }
    out += take;
    offset += take;
    remaining -= take;
    ++k;
  }
}

// Walks the schedule from the batch's start to this rank's last row: every rank makes the same
// picks, and reads only its own rows.
void TokenLoader::fill(const std::vector<uint64_t>& start, std::vector<int32_t>& tokens) {
  const int row_tokens = seq_len_ + 1;
  tokens.resize(size_t(rows()) * row_tokens);
  std::vector<uint64_t> drawn = start;
  const int first = rank_ * rows();
  for (int i = 0; i < first + rows(); ++i) {
    const size_t s = sources_.size() == 1 ? 0 : schedule_.pick(drawn);
    if (i >= first) {
      read_window(s, window_at(sources_[s], drawn[s]),
                  tokens.data() + size_t(i - first) * row_tokens);
    }
    ++drawn[s];
  }
}

void TokenLoader::work() {
  while (true) {
    std::vector<uint64_t> drawn;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || ready_.size() < kPrefetchBatches; });
      if (stop_) return;
      drawn = produce_drawn_;
    }
    Batch batch;
    batch.after = advance(drawn, global_batch_);
    batch.drawn = std::move(drawn);
    try {
      fill(batch.drawn, batch.tokens);
    } catch (...) {
      batch.error = std::current_exception();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    if (stop_) return;
    const bool failed = batch.error != nullptr;
    produce_drawn_ = batch.after;
    ready_.push_back(std::move(batch));
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
  next_drawn_ = batch.after;
  ready_.pop_front();
  cv_.notify_all();
}

std::vector<uint64_t> TokenLoader::samples_drawn() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return next_drawn_;
}

std::vector<LoaderPosition> TokenLoader::positions() const {
  const std::vector<uint64_t> drawn = samples_drawn();
  std::vector<LoaderPosition> p;
  for (size_t s = 0; s < sources_.size(); ++s) {
    const uint64_t windows = uint64_t(sources_[s].windows);
    p.push_back({drawn[s] / windows, drawn[s] % windows});
  }
  return p;
}

void TokenLoader::restore(const std::vector<LoaderPosition>& positions) {
  if (positions.size() != sources_.size()) {
    throw_error("data error: cannot restore a loader of ", sources_.size(), " sources to ",
                positions.size(), " positions: resume with the same data sources");
  }
  std::vector<uint64_t> drawn;
  for (size_t s = 0; s < sources_.size(); ++s) {
    const LoaderPosition& p = positions[s];
    const uint64_t windows = uint64_t(sources_[s].windows);
    if (p.sample >= windows || p.epoch > (UINT64_MAX - p.sample) / windows) {
      throw_error("data error: cannot restore the loader of ", describe(sources_[s].spec),
                  " to sample ", p.sample, " of epoch ", p.epoch, ": an epoch has only ", windows,
                  " samples; resume with the same data and seq_len");
    }
    drawn.push_back(p.epoch * windows + p.sample);
  }
  stop_worker();
  ready_.clear();
  next_drawn_ = produce_drawn_ = drawn;
  start_worker();
}

}  // namespace mamba
