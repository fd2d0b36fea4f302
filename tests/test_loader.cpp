// The token loader's contract: windows tile the token stream, the global order depends only on
// (seed, epoch), W ranks together see what one process sees, restore continues the identical
// sequence (on any world size), and bad data stops it with a one-line error.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/resource.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/shard.h"
#include "error_of.h"
#include "scratch.h"
#include "shard_fixtures.h"
#include "train/evaluate.h"

namespace mamba {
namespace {

using test::error_of;
using test::scratch_dir;
using test::write_shard;

constexpr int kVocab = 1000;
constexpr int kSeqLen = 7;

// Writes `stream` as shards of the given sizes (train-0000.h5, ...) and returns the glob.
std::string write_split(const std::string& dir, const std::vector<int32_t>& stream,
                        const std::vector<size_t>& sizes, int64_t vocab = kVocab) {
  ShardInfo attrs;
  attrs.vocab_size = vocab;
  attrs.eos_id = 0;
  attrs.tokenizer = "test";
  attrs.tokenizer_sha256 = "sha";
  attrs.split = "train";
  auto begin = stream.begin();
  for (size_t k = 0; k < sizes.size(); ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "/train-%04zu.h5", k);
    write_shard(dir + name, attrs, std::vector<int32_t>(begin, begin + sizes[k]), 0);
    begin += sizes[k];
  }
  return dir + "/train-*.h5";
}

// A stream where token i is i % kVocab, so a window's first token names its position.
std::vector<int32_t> counting_stream(size_t n) {
  std::vector<int32_t> stream(n);
  for (size_t i = 0; i < n; ++i) stream[i] = int32_t(i % kVocab);
  return stream;
}

const std::string& fixture() {
  // 400 tokens in uneven shards: 57 windows of 8 tokens (stride 7); windows cross shard ends.
  static const std::string pattern =
      write_split(scratch_dir("fixture"), counting_stream(400), {123, 5, 200, 72});
  return pattern;
}

// `batches` global batches as seen by `world` ranks together: per batch, rank 0's rows, then
// rank 1's, ... Starts from `from` when given.
std::vector<std::vector<int32_t>> run_ranks(int world, int global_batch, int batches, bool shuffle,
                                            const LoaderPosition* from = nullptr) {
  std::vector<std::unique_ptr<TokenLoader>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::make_unique<TokenLoader>(fixture(), kSeqLen, kVocab, global_batch, r,
                                                  world, 1234, shuffle));
    if (from) ranks.back()->restore({*from});
  }
  return test::global_batches(ranks, kSeqLen, batches);
}

TEST(Loader, WindowsTileTheStream) {
  TokenLoader loader(fixture(), kSeqLen, kVocab, 6, 0, 1, 1, false);
  EXPECT_EQ(loader.total_tokens(), 400);
  EXPECT_EQ(loader.samples_per_epoch(), (400 - 1) / kSeqLen);
  EXPECT_EQ(loader.rows(), 6);
  // In order (validation): window i is tokens [7i, 7i + 8); it wraps after the last window.
  std::vector<int32_t> rows(6 * (kSeqLen + 1));
  int64_t window = 0;
  for (int b = 0; b < 12; ++b) {
    loader.next(rows.data());
    for (int r = 0; r < 6; ++r, ++window) {
      const int64_t w = window % loader.samples_per_epoch();
      for (int t = 0; t <= kSeqLen; ++t) {
        ASSERT_EQ(rows[r * (kSeqLen + 1) + t], (w * kSeqLen + t) % kVocab) << b << " " << r;
      }
    }
  }
  EXPECT_EQ(loader.positions()[0].epoch, 1u);
  EXPECT_EQ(loader.positions()[0].sample, uint64_t(72 - 57));
}

TEST(Loader, ShuffledEpochIsAPermutationFixedBySeedAndEpoch) {
  TokenLoader loader(fixture(), kSeqLen, kVocab, 3, 0, 1, 99, true);
  const int64_t n = loader.samples_per_epoch();  // 57 = 19 batches of 3
  std::vector<int32_t> rows(3 * (kSeqLen + 1));
  std::vector<std::vector<int64_t>> epochs(2);
  for (int e = 0; e < 2; ++e) {
    for (int b = 0; b < n / 3; ++b) {
      loader.next(rows.data());
      for (int r = 0; r < 3; ++r) {
        const int64_t start = rows[r * (kSeqLen + 1)];
        ASSERT_EQ(start % kSeqLen, 0);
        epochs[e].push_back(start / kSeqLen);
      }
    }
  }
  for (const auto& order : epochs) {
    EXPECT_EQ(std::set<int64_t>(order.begin(), order.end()).size(), size_t(n));
  }
  EXPECT_NE(epochs[0], epochs[1]);
  std::vector<int64_t> sorted = epochs[0];
  std::sort(sorted.begin(), sorted.end());
  EXPECT_NE(sorted, epochs[0]);

  TokenLoader other_seed(fixture(), kSeqLen, kVocab, 3, 0, 1, 100, true);
  other_seed.next(rows.data());
  TokenLoader same_seed(fixture(), kSeqLen, kVocab, 3, 0, 1, 99, true);
  std::vector<int32_t> again(rows.size());
  same_seed.next(again.data());
  EXPECT_EQ(again[0] / kSeqLen, epochs[0][0]);
  EXPECT_NE(rows, again);
}

TEST(Loader, OneTwoAndThreeRanksSeeTheSameOrder) {
  // 25 batches of 6 = 150 samples: almost three epochs of 57, so epoch boundaries fall mid-batch.
  for (bool shuffle : {true, false}) {
    const auto one = run_ranks(1, 6, 25, shuffle);
    EXPECT_EQ(run_ranks(2, 6, 25, shuffle), one);
    EXPECT_EQ(run_ranks(3, 6, 25, shuffle), one);
  }
}

TEST(Loader, RestoreContinuesTheIdenticalSequence) {
  const auto reference = run_ranks(1, 6, 30, true);
  // Save after 11 batches on 3 ranks, restore on 2 ranks and on 1.
  TokenLoader loader(fixture(), kSeqLen, kVocab, 6, 0, 3, 1234, true);
  std::vector<int32_t> rows(2 * (kSeqLen + 1));
  for (int b = 0; b < 11; ++b) loader.next(rows.data());
  const LoaderPosition saved = loader.positions()[0];
  EXPECT_EQ(saved.epoch, 1u);
  EXPECT_EQ(saved.sample, uint64_t(66 - 57));
  const std::vector<std::vector<int32_t>> tail(reference.begin() + 11, reference.end());
  EXPECT_EQ(run_ranks(2, 6, 19, true, &saved), tail);
  EXPECT_EQ(run_ranks(1, 6, 19, true, &saved), tail);

  // Restoring the same loader discards what it had prefetched.
  for (int b = 0; b < 5; ++b) loader.next(rows.data());
  loader.restore({saved});
  EXPECT_EQ(loader.positions()[0].sample, saved.sample);
  loader.next(rows.data());
  EXPECT_TRUE(std::equal(rows.begin(), rows.end(), tail[0].begin()));
  // Restore to the very start.
  loader.rewind();
  loader.next(rows.data());
  EXPECT_TRUE(std::equal(rows.begin(), rows.end(), reference[0].begin()));

  const std::string e = error_of([&] { loader.restore({{0, 57}}); });
  EXPECT_NE(e.find("57"), std::string::npos) << e;
}

TEST(Loader, WindowsAtRandomPositionsMatchHdf5Reads) {
  // Random ids in shards of uneven sizes, two shorter than a window, stored as uint16 and as
  // uint32: the windows the loader serves (read without HDF5) equal the stream read through HDF5,
  // at random positions and across every shard end.
  for (int64_t vocab : {int64_t(kVocab), int64_t(70000)}) {
    const std::string dir = scratch_dir("direct_" + std::to_string(vocab));
    const std::vector<size_t> sizes = {70000, 3, 65536, 5, 140001};
    std::mt19937 gen{uint32_t(vocab)};
    std::vector<int32_t> stream(70000 + 3 + 65536 + 5 + 140001);
    for (int32_t& t : stream) t = int32_t(gen() % uint32_t(vocab));
    const std::string pattern = write_split(dir, stream, sizes, vocab);
    std::vector<int32_t> oracle;
    for (const std::string& path : glob_sorted(pattern)) {
      ShardReader hdf5(path, ShardAccess::hdf5);
      std::vector<int32_t> all(size_t(hdf5.info().num_tokens));
      hdf5.read(0, int64_t(all.size()), all.data());
      oracle.insert(oracle.end(), all.begin(), all.end());
    }
    ASSERT_EQ(oracle, stream);

    const int seq_len = 1000, rows = 4;
    TokenLoader loader(pattern, seq_len, int(vocab), rows, 0, 1, 1, false);
    std::vector<uint64_t> starts;
    for (int i = 0; i < 40; ++i) starts.push_back(gen() % uint64_t(loader.samples_per_epoch()));
    size_t end = 0;
    for (size_t k = 0; k + 1 < sizes.size(); ++k) {
      end += sizes[k];
      starts.push_back(uint64_t(end - 1) / seq_len);  // the window holding tokens end - 1 and end
    }
    std::vector<int32_t> got(size_t(rows) * (seq_len + 1));
    for (uint64_t start : starts) {
      loader.restore({{0, start}});
      loader.next(got.data());
      for (int r = 0; r < rows; ++r) {
        const uint64_t w = (start + uint64_t(r)) % uint64_t(loader.samples_per_epoch());
        ASSERT_TRUE(std::equal(got.begin() + r * (seq_len + 1),
                               got.begin() + (r + 1) * (seq_len + 1),
                               oracle.begin() + int64_t(w) * seq_len))
            << "vocab " << vocab << " window " << w;
      }
    }
  }
}

int open_fds() {
  const auto entries = std::filesystem::directory_iterator("/proc/self/fd");
  return int(std::distance(begin(entries), end(entries)));
}

// 80 shards of 50 tokens, token i being i.
std::string many_shards(const std::string& name) {
  std::vector<int32_t> stream(80 * 50);
  std::iota(stream.begin(), stream.end(), 0);
  return write_split(scratch_dir(name), stream, std::vector<size_t>(80, 50),
                     int64_t(stream.size()));
}

// Two epochs of many_shards() in batches of 3: every window has the right tokens, every window is
// served, and the process never holds more than `bound` more files open than before the loader.
void expect_two_epochs_within(TokenLoader& loader, int fds_before, int bound) {
  const int64_t n = loader.samples_per_epoch();  // 571
  std::vector<int32_t> rows(3 * (kSeqLen + 1));
  std::vector<int> seen(size_t(n), 0);
  for (int64_t b = 0; b < 2 * n / 3; ++b) {
    loader.next(rows.data());
    for (int r = 0; r < 3; ++r) {
      const int32_t* row = rows.data() + r * (kSeqLen + 1);
      ASSERT_EQ(row[0] % kSeqLen, 0);
      for (int t = 1; t <= kSeqLen; ++t) ASSERT_EQ(row[t], row[0] + t);
      ++seen[size_t(row[0] / kSeqLen)];
    }
    EXPECT_LE(open_fds() - fds_before, bound);
  }
  for (int count : seen) EXPECT_GE(count, 1);
}

TEST(Loader, ManyShardsStayWithinTheOpenFileBound) {
  // Under a limit of 64 open files the loader keeps 32 open and reuses them.
  const std::string pattern = many_shards("many");
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const int before = open_fds();
  {
    TokenLoader loader(pattern, kSeqLen, 80 * 50, 3, 0, 1, 5, true);
    EXPECT_EQ(loader.max_open_files(), 32u);
    expect_two_epochs_within(loader, before, 32);
  }
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST(Loader, AGivenOpenFileBoundHolds) {
  // One open file: every switch of shard closes one and opens the next.
  const std::string pattern = many_shards("one_open");
  const int before = open_fds();
  TokenLoader loader(pattern, kSeqLen, 80 * 50, 3, 0, 1, 5, true, 1);
  EXPECT_EQ(loader.max_open_files(), 1u);
  expect_two_epochs_within(loader, before, 1);
}

TEST(Loader, ValidationSourcesShareTheOpenFileBound) {
  const std::string pattern = many_shards("val_sources");
  const std::vector<DataSource> val{{"a", pattern, 1.0}, {"b", pattern, 1.0}, {"c", pattern, 1.0}};
  for (const auto& [budget, each] : {std::pair<size_t, size_t>{10, 3}, {2, 1}}) {
    const auto loaders = open_validation(val, kSeqLen, 80 * 50, 3, 0, 1, budget);
    ASSERT_EQ(loaders.size(), 3u);
    for (const auto& loader : loaders) EXPECT_EQ(loader->max_open_files(), each) << budget;
  }
}

TEST(Loader, BadSetupsAreRefused) {
  std::string e = error_of([] { TokenLoader(fixture(), kSeqLen, kVocab, 7, 0, 2, 1, true); });
  EXPECT_NE(e.find("multiple of the number of ranks"), std::string::npos) << e;

  const std::string short_split = write_split(scratch_dir("short"), counting_stream(8), {8});
  e = error_of([&] { TokenLoader(short_split, 8, kVocab, 1, 0, 1, 1, true); });
  EXPECT_NE(e.find(short_split), std::string::npos) << e;
  EXPECT_NE(e.find("fewer than one window"), std::string::npos) << e;
  TokenLoader exactly_one(short_split, 7, kVocab, 1, 0, 1, 1, true);  // 8 tokens: one window
  EXPECT_EQ(exactly_one.samples_per_epoch(), 1);

  e = error_of([] { TokenLoader("/nonexistent/train-*.h5", 8, kVocab, 1, 0, 1, 1, true); });
  EXPECT_NE(e.find("/nonexistent/train-*.h5"), std::string::npos) << e;

  e = error_of([] { TokenLoader(fixture(), kSeqLen, 256, 1, 0, 1, 1, true); });
  EXPECT_NE(e.find("vocab_size 1000"), std::string::npos) << e;
}

TEST(Loader, TokenIdsBeyondTheVocabStopIt) {
  // A damaged (or hand-made) shard: its attributes say vocab 1000 but it holds a 1500. The writer
  // refuses such ids, so the value is planted with HDF5 directly.
  const std::string dir = scratch_dir("bad_ids");
  const std::string pattern = write_split(dir, counting_stream(100), {100});
  const std::string path = dir + "/train-0000.h5";
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const hid_t dataset = H5Dopen2(file, "tokens", H5P_DEFAULT);
  const hid_t space = H5Dget_space(dataset);
  const hsize_t offset[1] = {50}, count[1] = {1};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, offset, nullptr, count, nullptr);
  const hid_t one = H5Screate_simple(1, count, nullptr);
  const uint16_t planted = 1500;
  H5Dwrite(dataset, H5T_NATIVE_UINT16, one, space, H5P_DEFAULT, &planted);
  H5Sclose(one);
  H5Sclose(space);
  H5Dclose(dataset);
  H5Fclose(file);

  TokenLoader loader(pattern, 9, 4000, 11, 0, 1, 1, false);
  std::vector<int32_t> rows(11 * 10);
  const std::string e = error_of([&] { loader.next(rows.data()); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("holds token 1500 >= vocab_size 1000"), std::string::npos) << e;
  // It keeps saying so rather than handing out data after the bad batch.
  EXPECT_EQ(error_of([&] { loader.next(rows.data()); }), e);
}

}  // namespace
}  // namespace mamba
