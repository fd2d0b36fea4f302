// Training mixtures: the schedule's shares, W ranks seeing what one process sees, exact resume,
// sources that wrap into new epochs, and the refusal of sources that cannot be mixed.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/mixture.h"
#include "data/shard.h"
#include "error_of.h"
#include "scratch.h"
#include "shard_fixtures.h"

namespace mamba {
namespace {

using test::error_of;
using test::scratch_dir;
using test::write_shard;

constexpr int kVocab = 1000;
constexpr int kSeqLen = 7;
constexpr int32_t kCodeBase = 500;  // code's ids are 500..999, web's 0..499: a row names its source

ShardInfo attributes(int64_t vocab) {
  ShardInfo a;
  a.vocab_size = vocab;
  a.eos_id = 0;
  a.tokenizer = "test";
  a.tokenizer_sha256 = "sha";
  a.split = "train";
  return a;
}

// n tokens base, base + 1, ... (mod 500), so a window's first token names its position too.
std::string write_source(const std::string& name, size_t n, int32_t base, int64_t vocab = kVocab) {
  const std::string dir = scratch_dir("mixture_" + name);
  std::vector<int32_t> tokens(n);
  for (size_t i = 0; i < n; ++i) tokens[i] = base + int32_t(i % 500);
  write_shard(dir + "/train-0000.h5", attributes(vocab), tokens);
  return dir + "/train-*.h5";
}

// web: 600 tokens = 85 windows; code: 300 tokens = 42 windows, so code wraps every few batches.
std::vector<DataSource> sources(double web = 0.8, double code = 0.2) {
  static const std::string web_glob = write_source("web", 600, 0);
  static const std::string code_glob = write_source("code", 300, kCodeBase);
  return {{"web", web_glob, web}, {"code", code_glob, code}};
}

// `batches` global batches as `world` ranks see them together (rank 0's rows, then rank 1's...).
std::vector<std::vector<int32_t>> run_ranks(int world, int global_batch, int batches,
                                            const std::vector<LoaderPosition>* from = nullptr) {
  std::vector<std::unique_ptr<TokenLoader>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::make_unique<TokenLoader>(sources(), kSeqLen, kVocab, global_batch, r,
                                                  world, 1234, true));
    if (from) ranks.back()->restore(*from);
  }
  return test::global_batches(ranks, kSeqLen, batches);
}

TEST(MixtureSchedule, EverySourceStaysWithinOneSampleOfItsShare) {
  const std::vector<std::vector<double>> cases = {
      {0.8, 0.2}, {0.7, 0.3}, {4, 1}, {0.5, 0.3, 0.2}, {1, 1, 1}, {std::sqrt(2.0), 1, 0.01}};
  for (const auto& weights : cases) {
    std::vector<DataSource> list;
    double total = 0;
    for (double w : weights) {
      list.push_back({"s" + std::to_string(list.size()), "unused", w});
      total += w;
    }
    const MixtureSchedule schedule(list);
    std::vector<uint64_t> drawn(weights.size(), 0);
    for (uint64_t n = 1; n <= 20000; ++n) {
      ++drawn[schedule.pick(drawn)];
      for (size_t s = 0; s < weights.size(); ++s) {
        ASSERT_LT(std::abs(double(drawn[s]) - weights[s] / total * double(n)), 1.0)
            << "weights case " << weights.size() << " source " << s << " after " << n;
      }
    }
  }
}

TEST(MixtureSchedule, BadWeightsAreRefused) {
  for (double w : {0.0, -1.0, double(NAN), double(INFINITY)}) {
    const std::string e = error_of([&] { MixtureSchedule({{"web", "x", 1.0}, {"code", "y", w}}); });
    EXPECT_NE(e.find("source 'code'"), std::string::npos) << e;
  }
}

// The acceptance figure: 0.8/0.2 over 200 steps, counted from the tokens the loader
// served (each row's ids say its source), within 2% of the shares.
TEST(Mixture, TwoHundredStepsDrawTheWeightedShares) {
  const int global_batch = 8, steps = 200;
  TokenLoader loader(sources(), kSeqLen, kVocab, global_batch, 0, 1, 7, true);
  std::vector<int32_t> rows(size_t(global_batch) * (kSeqLen + 1));
  int64_t web = 0, code = 0;
  for (int step = 0; step < steps; ++step) {
    loader.next(rows.data());
    for (int r = 0; r < global_batch; ++r) {
      const int32_t* row = rows.data() + r * (kSeqLen + 1);
      const bool is_code = row[0] >= kCodeBase;
      // A row never mixes sources.
      for (int i = 0; i <= kSeqLen; ++i) ASSERT_EQ(row[i] >= kCodeBase, is_code);
      (is_code ? code : web) += kSeqLen;
    }
  }
  const double total = double(web + code);
  EXPECT_NEAR(double(web) / total, 0.8, 0.02);
  EXPECT_NEAR(double(code) / total, 0.2, 0.02);
  const std::vector<uint64_t> drawn = loader.samples_drawn();
  EXPECT_EQ(int64_t(drawn[0]) * kSeqLen, web);
  EXPECT_EQ(int64_t(drawn[1]) * kSeqLen, code);
}

// code (42 windows) runs out many times: each of its epochs serves every window once, in a new
// order.
TEST(Mixture, ASourceThatRunsOutStartsItsNextEpoch) {
  TokenLoader loader(sources(0.5, 0.5), kSeqLen, kVocab, 6, 0, 1, 3, true);
  std::vector<int32_t> rows(6 * (kSeqLen + 1));
  std::vector<int32_t> code_windows;
  for (int b = 0; b < 70; ++b) {  // 420 samples, 210 of them code: 5 epochs
    loader.next(rows.data());
    for (int r = 0; r < 6; ++r) {
      const int32_t first = rows[size_t(r) * (kSeqLen + 1)];
      if (first >= kCodeBase) code_windows.push_back((first - kCodeBase) / kSeqLen);
    }
  }
  ASSERT_EQ(code_windows.size(), 210u);
  std::set<std::vector<int32_t>> orders;
  for (size_t epoch = 0; epoch < 5; ++epoch) {
    const std::vector<int32_t> order(code_windows.begin() + epoch * 42,
                                     code_windows.begin() + (epoch + 1) * 42);
    EXPECT_EQ(std::set<int32_t>(order.begin(), order.end()).size(), 42u) << "epoch " << epoch;
    orders.insert(order);
  }
  EXPECT_EQ(orders.size(), 5u);
  EXPECT_EQ(loader.positions()[1].epoch, 5u);
  EXPECT_EQ(loader.positions()[1].sample, 0u);
}

TEST(Mixture, OneTwoAndThreeRanksSeeTheSameOrder) {
  const auto one = run_ranks(1, 6, 40);
  EXPECT_EQ(run_ranks(2, 6, 40), one);
  EXPECT_EQ(run_ranks(3, 6, 40), one);
}

TEST(Mixture, RestoreContinuesTheIdenticalSequence) {
  const auto reference = run_ranks(1, 6, 50);
  // Save after 37 batches (222 samples: web is in its third epoch, code in its second) on 3
  // ranks, restore on 2 and 1.
  TokenLoader loader(sources(), kSeqLen, kVocab, 6, 0, 3, 1234, true);
  std::vector<int32_t> rows(2 * (kSeqLen + 1));
  for (int b = 0; b < 37; ++b) loader.next(rows.data());
  const std::vector<LoaderPosition> saved = loader.positions();
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0].epoch, 2u);
  EXPECT_EQ(saved[1].epoch, 1u);
  const std::vector<std::vector<int32_t>> tail(reference.begin() + 37, reference.end());
  EXPECT_EQ(run_ranks(2, 6, 13, &saved), tail);
  EXPECT_EQ(run_ranks(1, 6, 13, &saved), tail);

  const std::string e = error_of([&] { loader.restore({saved[0]}); });
  EXPECT_NE(e.find("2 sources"), std::string::npos) << e;
}

TEST(Mixture, WeightsNeedNotSumToOne) {
  TokenLoader a(sources(0.8, 0.2), kSeqLen, kVocab, 5, 0, 1, 1, true);
  TokenLoader b(sources(4, 1), kSeqLen, kVocab, 5, 0, 1, 1, true);
  std::vector<int32_t> x(5 * (kSeqLen + 1)), y(x.size());
  for (int i = 0; i < 30; ++i) {
    a.next(x.data());
    b.next(y.data());
    ASSERT_EQ(x, y);
  }
}

TEST(Mixture, SourcesThatCannotBeMixedAreRefused) {
  const std::string web = sources()[0].path;
  // Another vocabulary.
  const std::string big = write_source("big_vocab", 300, 0, 2000);
  std::string e = error_of([&] {
    TokenLoader({{"web", web, 1}, {"big", big, 1}}, kSeqLen, 4000, 2, 0, 1, 1, true);
  });
  EXPECT_NE(e.find("source 'big'"), std::string::npos) << e;
  EXPECT_NE(e.find("vocab_size 2000"), std::string::npos) << e;

  // The same vocabulary stored as uint32: made with a vocab > 65536, then relabelled.
  const std::string dir = scratch_dir("mixture_wide");
  const std::string path = dir + "/train-0000.h5";
  std::vector<int32_t> tokens(300);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % 500);
  write_shard(path, attributes(70000), tokens);
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  const hid_t attr = H5Aopen(file, "vocab_size", H5P_DEFAULT);
  const int64_t vocab = kVocab;
  H5Awrite(attr, H5T_NATIVE_INT64, &vocab);
  H5Aclose(attr);
  H5Fclose(file);
  test::add_to_manifest(read_shard_info(path));
  ASSERT_EQ(read_shard_info(path).token_bytes, 4);
  e = error_of([&] {
    TokenLoader({{"web", web, 1}, {"wide", dir + "/train-*.h5", 1}}, kSeqLen, kVocab, 2, 0, 1, 1,
                true);
  });
  EXPECT_NE(e.find("source 'wide'"), std::string::npos) << e;
  EXPECT_NE(e.find("token type uint32"), std::string::npos) << e;

  // A glob that matches nothing names the glob.
  e = error_of([&] {
    TokenLoader({{"web", web, 1}, {"none", "/nonexistent/x-*.h5", 1}}, kSeqLen, kVocab, 2, 0, 1, 1,
                true);
  });
  EXPECT_NE(e.find("/nonexistent/x-*.h5"), std::string::npos) << e;
}

}  // namespace
}  // namespace mamba
