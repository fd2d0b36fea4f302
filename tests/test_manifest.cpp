// Shards become a corpus only through the manifest `mamba prepare` writes last: a run killed with
// SIGKILL leaves nothing the loader accepts, and shards that were truncated, changed, added or lost
// after the run are refused with one line naming the file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/text.h"
#include "error_of.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::error_of;
using test::run_mamba;
using test::scratch_dir;
using test::write_text;

// JSONL documents of about 1 KB each, `bytes` in all.
std::string jsonl_corpus(size_t bytes) {
  std::string out;
  for (int d = 0; out.size() < bytes; ++d) {
    std::string text = "document " + std::to_string(d) + ":";
    while (text.size() < 1000) text += " word" + std::to_string(text.size() % 97);
    out += "{\"text\": \"" + text + "\"}\n";
  }
  return out;
}

std::string loader_error(const std::string& pattern) {
  return error_of([&] { TokenLoader(pattern, 16, 257, 1, 0, 1, 1, true); });
}

bool wait_for(const std::string& path, pid_t child) {
  for (int i = 0; i < 6000; ++i) {
    if (fs::exists(path)) return true;
    if (waitpid(child, nullptr, WNOHANG) == child) return false;  // it died on its own
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// Starts `mamba prepare` on a named pipe, feeds it several batches' worth of documents but never
// ends the input, waits until it has finished a shard and kills it with SIGKILL.
void prepare_killed_midway(const std::string& fifo, const std::string& out, bool overwrite) {
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    std::vector<const char*> argv = {"mamba",     "prepare",   "--tokenizer",    "byte",
                                     "--out",     out.c_str(), "--shard-tokens", "100000",
                                     "--threads", "1",         "--val-fraction", "0.5",
                                     "--quiet",   fifo.c_str()};
    if (overwrite) argv.push_back("--overwrite");
    argv.push_back(nullptr);
    execv(MAMBA_BINARY, const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  // Opening a pipe for writing without a reader fails with ENXIO in non-blocking mode; retry
  // until prepare has opened it, so a prepare that dies early cannot hang the test.
  int fd = -1;
  for (int i = 0; i < 6000 && fd < 0; ++i) {
    fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GE(fd, 0) << "prepare never opened " << fifo;
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  signal(SIGPIPE, SIG_IGN);
  const std::string corpus = jsonl_corpus(6 << 20);  // more than one 4 MB batch per thread
  size_t written = 0;
  while (written < corpus.size()) {
    const ssize_t n = write(fd, corpus.data() + written, corpus.size() - written);
    if (n <= 0) break;
    written += size_t(n);
  }
  const bool shard_done = wait_for(out + "/train-0000.h5", child);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(fd);
  ASSERT_TRUE(shard_done) << "prepare wrote no shard before it was killed";
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST(Manifest, KilledPrepareLeavesNothingTheLoaderAccepts) {
  const std::string dir = scratch_dir("killed");
  const std::string out = dir + "/out";
  prepare_killed_midway(dir + "/corpus.jsonl", out, false);

  // What it left looks like a corpus: finished shards of the documented size...
  const ShardInfo first = read_shard_info(out + "/train-0000.h5");
  EXPECT_EQ(first.num_tokens, 100000);
  EXPECT_FALSE(fs::exists(out + "/" + kManifestFile));
  // ... but the loader refuses every one, naming it and the fix.
  for (const char* split : {"train", "val"}) {
    const std::string e = loader_error(out + "/" + split + "-*.h5");
    EXPECT_TRUE(contains(e, out + "/" + split + "-0000.h5")) << e;
    EXPECT_TRUE(contains(e, "not covered by a manifest")) << e;
    EXPECT_TRUE(contains(e, "re-run mamba prepare")) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
  // The leftovers block a second run into the same place unless it may overwrite them.
  write_text(dir + "/small.jsonl", jsonl_corpus(50000));
  const std::string args = "prepare --tokenizer byte --out " + out + " --quiet --val-fraction 0.1 ";
  const auto refused = run_mamba(args + dir + "/small.jsonl");
  EXPECT_NE(refused.status, 0);
  EXPECT_TRUE(contains(refused.output, "--overwrite")) << refused.output;
  ASSERT_EQ(run_mamba(args + "--overwrite " + dir + "/small.jsonl").status, 0);
  TokenLoader loader(out + "/train-*.h5", 16, 257, 1, 0, 1, 1, true);
  EXPECT_EQ(loader.total_tokens(), read_manifest(out).splits.at("train").tokens);
}

TEST(Manifest, KilledOverwriteInvalidatesTheOldCorpus) {
  // A finished corpus, then a run over it with --overwrite that is killed: neither the old
  // shards nor the new ones may pass for a corpus.
  const std::string dir = scratch_dir("killed_overwrite");
  const std::string out = dir + "/out";
  write_text(dir + "/small.jsonl", jsonl_corpus(50000));
  ASSERT_EQ(run_mamba("prepare --tokenizer byte --quiet --val-fraction 0.1 --out " + out + " " +
                      dir + "/small.jsonl")
                .status,
            0);
  ASSERT_TRUE(fs::exists(out + "/" + kManifestFile));
  prepare_killed_midway(dir + "/corpus.jsonl", out, true);
  EXPECT_FALSE(fs::exists(out + "/" + kManifestFile));
  EXPECT_TRUE(contains(loader_error(out + "/train-*.h5"), "not covered by a manifest"));
}

class DamagedShard : public test::ScratchDirTest {
 protected:
  void SetUp() override {
    ScratchDirTest::SetUp();
    write_text(path("corpus.jsonl"), jsonl_corpus(300000));
    out_ = path("out");
    const auto r =
        run_mamba("prepare --tokenizer byte --quiet --val-fraction 0.1 " +
                  std::string("--shard-tokens 100000 --out ") + out_ + " " + path("corpus.jsonl"));
    ASSERT_EQ(r.status, 0) << r.output;
    shard_ = out_ + "/train-0001.h5";
    ASSERT_TRUE(fs::exists(shard_));
    const auto verified = run_mamba("prepare --verify " + out_);
    ASSERT_EQ(verified.status, 0) << verified.output;
    EXPECT_TRUE(contains(verified.output, "verified")) << verified.output;
    TokenLoader(out_ + "/train-*.h5", 16, 257, 1, 0, 1, 1, true);  // accepted as made
  }
  std::string out_, shard_;
};

TEST_F(DamagedShard, TruncatedShardIsRefusedAtOpen) {
  fs::resize_file(shard_, fs::file_size(shard_) - 1000);
  const std::string e = loader_error(out_ + "/train-*.h5");
  EXPECT_TRUE(contains(e, shard_)) << e;
  EXPECT_TRUE(contains(e, "truncated or changed")) << e;
  const auto v = run_mamba("prepare --verify " + out_);
  EXPECT_NE(v.status, 0);
  EXPECT_TRUE(contains(v.output, shard_)) << v.output;
}

TEST_F(DamagedShard, ChangedBytesAreFoundByVerify) {
  // Same size, one token's bytes changed: the cheap check at open cannot see it, --verify does.
  std::string bytes = read_file(shard_);
  bytes[bytes.size() - 5000] ^= 0x5A;
  write_text(shard_, bytes);
  const auto v = run_mamba("prepare --verify " + out_);
  EXPECT_NE(v.status, 0);
  EXPECT_TRUE(contains(v.output, shard_)) << v.output;
  EXPECT_TRUE(contains(v.output, "crc32")) << v.output;
  EXPECT_TRUE(contains(v.output, "re-run mamba prepare")) << v.output;
}

TEST_F(DamagedShard, UnlistedAndMissingShardsAreRefused) {
  fs::copy_file(shard_, out_ + "/train-0099.h5");
  std::string e = loader_error(out_ + "/train-*.h5");
  EXPECT_TRUE(contains(e, out_ + "/train-0099.h5")) << e;
  EXPECT_TRUE(contains(e, "is not listed in " + out_ + "/" + kManifestFile)) << e;
  fs::remove(out_ + "/train-0099.h5");

  fs::remove(shard_);
  e = loader_error(out_ + "/train-*.h5");
  EXPECT_TRUE(contains(e, "train-0001.h5, which is missing")) << e;
}

TEST_F(DamagedShard, AdoptListsShardsOfAnOlderPrepare) {
  const int64_t tokens =
      TokenLoader(out_ + "/train-*.h5", 16, 257, 1, 0, 1, 1, true).total_tokens();
  fs::remove(out_ + "/" + kManifestFile);  // as an older prepare left them
  EXPECT_TRUE(contains(loader_error(out_ + "/train-*.h5"), "not covered by a manifest"));
  const auto adopted = run_mamba("prepare --adopt " + out_);
  ASSERT_EQ(adopted.status, 0) << adopted.output;
  EXPECT_TRUE(contains(adopted.output, "listed 4 shards")) << adopted.output;
  EXPECT_EQ(TokenLoader(out_ + "/train-*.h5", 16, 257, 1, 0, 1, 1, true).total_tokens(), tokens);
  EXPECT_EQ(run_mamba("prepare --verify " + out_).status, 0);
  EXPECT_NE(run_mamba("prepare --adopt " + out_).status, 0);  // it has a manifest now

  // A lost shard leaves a gap in the numbers, which adopt refuses.
  fs::remove(out_ + "/" + kManifestFile);
  fs::remove(shard_);
  const auto gap = run_mamba("prepare --adopt " + out_);
  EXPECT_NE(gap.status, 0);
  EXPECT_TRUE(contains(gap.output, out_ + "/train-0002.h5 is not train-0001.h5")) << gap.output;
  EXPECT_FALSE(fs::exists(out_ + "/" + kManifestFile));
}

TEST_F(DamagedShard, DamagedManifestIsNamed) {
  write_text(out_ + "/" + kManifestFile, "{\"format\": \"mamba-manifest\"");
  const std::string e = loader_error(out_ + "/train-*.h5");
  EXPECT_TRUE(contains(e, out_ + "/" + kManifestFile)) << e;
  EXPECT_TRUE(contains(e, "not a valid shard manifest")) << e;
}

}  // namespace
}  // namespace mamba
