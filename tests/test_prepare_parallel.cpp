// `mpirun -np N mamba prepare` writes the same shards as one process: the same files, tokens,
// split and per-shard document counts, with shards that straddle the ranks' shares.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/text.h"
#include "mpirun.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;
using test::scratch_dir;
using test::write_text;

struct Shard {
  std::string name;
  ShardInfo info;
  std::vector<int32_t> tokens;
};

std::vector<Shard> read_shards(const std::string& dir) {
  std::vector<Shard> shards;
  for (const std::string& path : glob_sorted(dir + "/*.h5")) {
    ShardReader reader(path);
    Shard s{fs::path(path).filename().string(), reader.info(), {}};
    s.tokens.resize(size_t(s.info.num_tokens));
    reader.read(0, s.info.num_tokens, s.tokens.data());
    shards.push_back(std::move(s));
  }
  return shards;
}

// Seven files of uneven sizes (one empty, one of plain text), 331 documents.
std::string make_corpus(const std::string& dir) {
  for (int f = 0; f < 6; ++f) {
    std::string jsonl;
    for (int d = 0; d < 20 + 17 * f; ++d) {
      jsonl += "{\"text\": \"file " + std::to_string(f) + " doc " + std::to_string(d);
      for (int w = 0; w < (d * 7 + f) % 60; ++w) jsonl += " w" + std::to_string(w);
      jsonl += "\"}\n";
    }
    write_text(dir + "/in/part-" + std::to_string(f) + ".jsonl", jsonl);
  }
  write_text(dir + "/in/part-6.txt", std::string(30000, 'x') + "\nthe end\n");
  write_text(dir + "/in/part-7.txt", "");
  return dir + "/in";
}

TEST(PrepareParallel, RanksWriteTheShardsOneProcessWrites) {
  const std::string dir = scratch_dir("parallel");
  const std::string in = make_corpus(dir);
  const std::string args =
      " prepare --quiet --tokenizer byte --val-fraction 0.1 --shard-tokens 3000 --out ";
  const auto one = run_mamba(args + dir + "/one " + in);
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<Shard> expected = read_shards(dir + "/one");
  ASSERT_GT(expected.size(), 10u);
  const Manifest expected_manifest = read_manifest(dir + "/one");

  for (const int ranks : {2, 3}) {
    const std::string out = dir + "/ranks" + std::to_string(ranks);
    const std::string command =
        test::mpirun(ranks) + MAMBA_BINARY + args + out + " " + in + " > " + out + ".log 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    const std::vector<Shard> got = read_shards(out);
    ASSERT_EQ(got.size(), expected.size()) << ranks;
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].name, expected[k].name);
      EXPECT_EQ(got[k].tokens, expected[k].tokens) << got[k].name << " with " << ranks;
      EXPECT_EQ(got[k].info.documents, expected[k].info.documents) << got[k].name;
      EXPECT_EQ(got[k].info.split, expected[k].info.split) << got[k].name;
      EXPECT_EQ(got[k].info.tokenizer_sha256, expected[k].info.tokenizer_sha256);
    }
    const Manifest m = read_manifest(out);
    for (const char* split : {"train", "val"}) {
      EXPECT_EQ(m.splits.at(split).tokens_sha256, expected_manifest.splits.at(split).tokens_sha256);
      EXPECT_EQ(m.splits.at(split).documents, expected_manifest.splits.at(split).documents);
    }
    // The files themselves are the same bytes (no modification times in them).
    ASSERT_EQ(m.shards.size(), expected_manifest.shards.size());
    for (size_t k = 0; k < m.shards.size(); ++k) {
      EXPECT_EQ(m.shards[k].crc32, expected_manifest.shards[k].crc32) << m.shards[k].file;
    }
    EXPECT_FALSE(fs::exists(out + "/.prepare-parallel")) << "temporary files left";
    EXPECT_EQ(run_mamba("prepare --verify " + out).status, 0);
  }
}

TEST(PrepareParallel, BadInputOnOneRankStopsTheJob) {
  const std::string dir = scratch_dir("parallel_bad");
  const std::string in = make_corpus(dir);
  write_text(in + "/part-5.jsonl", "{\"text\": \"fine\"}\nnot json\n");  // the last rank's share
  const std::string out = dir + "/out";
  const std::string command = test::mpirun(2) + MAMBA_BINARY +
                              " prepare --quiet --tokenizer byte --val-fraction 0.1 --out " + out +
                              " " + in + " > " + dir + "/log 2>&1";
  EXPECT_NE(std::system(command.c_str()), 0);
  const std::string log = read_file(dir + "/log");
  EXPECT_NE(log.find(in + "/part-5.jsonl line 2 is not valid JSON"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out + "/" + kManifestFile));
}

}  // namespace
}  // namespace mamba
