// Loader benchmark on a corpus of many shards: how long opening it takes (glob, manifest, one stat
// and one header read per shard), how fast shuffled batches come, what the loader holds (open
// files, peak RSS), and how long the full check of `mamba prepare --verify` takes. Prints one
// JSON line.
//   bench_loader [--dir DIR] [--shards N] [--shard-tokens T] [--seqlen L] [--batch B]
//                [--batches K] [--procs P] [--verify 0|1]
// The shards (random GPT-2-sized ids, uint16) are written once into DIR and reused when they are
// there. --procs P runs P loader processes at once, rank r of P each (global batch P*B), as P
// ranks of one machine would, and reports the slowest and fastest rank. tokens_per_s counts
// input tokens (B*L per batch) after the first batch, whose time (the epoch's shuffle, the first
// opens) is first_batch_s; tokens_per_cpu_s divides by the CPU time the reads took instead.
// loader_fds: files the loader holds open after reading.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/host_memory.h"
#include "util/rng.h"

using mamba::seconds_since;

namespace {

std::string flag(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return argv[i + 1];
  }
  return fallback;
}

// Writes the shards and their manifest the way prepare leaves them.
void write_corpus(const std::string& dir, int shards, int64_t tokens_per_shard) {
  std::filesystem::create_directories(dir);
  mamba::ShardInfo attributes;
  attributes.vocab_size = 50257;
  attributes.eos_id = 50256;
  attributes.tokenizer = "bench";
  attributes.tokenizer_sha256 = "bench";
  attributes.split = "train";
  mamba::Rng rng(1);
  std::vector<int32_t> tokens(static_cast<size_t>(tokens_per_shard));
  mamba::Manifest manifest;
  for (int k = 0; k < shards; ++k) {
    for (int32_t& t : tokens) t = int32_t(rng.below(50257));
    char name[32];
    std::snprintf(name, sizeof name, "/train-%06d.h5", k);
    mamba::ShardWriter writer(dir + name, attributes);
    writer.append(tokens.data(), tokens.size());
    manifest.shards.push_back(mamba::describe_shard(writer.finish()));
  }
  mamba::write_manifest(dir, manifest);
}

int open_fds() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    ++n;
  }
  return n - 1;  // the directory listing's own
}

double cpu_seconds() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

double peak_rss_mb() {
  return double(mamba::peak_resident_memory()) / double(1 << 20);
}

struct ReadResult {
  double open_s = 0, first_batch_s = 0, read_s = 0, read_cpu_s = 0, peak_rss_mb = 0;
  int loader_fds = 0, fd_bound = 0;
};

// Opens the loader as rank `rank` of `world` and reads `batches` batches after the first.
ReadResult read_batches(const std::string& dir, int seq_len, int batch, int batches, int rank,
                        int world) {
  ReadResult r;
  const int fds_before = open_fds();
  auto t = std::chrono::steady_clock::now();
  mamba::TokenLoader loader(dir + "/train-*.h5", seq_len, 50280, batch * world, rank, world, 1,
                            true);
  r.open_s = seconds_since(t);
  r.fd_bound = int(loader.max_open_files());
  std::vector<int32_t> rows(size_t(batch) * (seq_len + 1));
  t = std::chrono::steady_clock::now();
  loader.next(rows.data());
  r.first_batch_s = seconds_since(t);
  t = std::chrono::steady_clock::now();
  const double cpu = cpu_seconds();
  for (int b = 0; b < batches; ++b) loader.next(rows.data());
  r.read_s = seconds_since(t);
  r.read_cpu_s = cpu_seconds() - cpu;
  r.loader_fds = open_fds() - fds_before;
  r.peak_rss_mb = peak_rss_mb();
  return r;
}

// P processes at once, one rank each; their results come back through pipes.
std::vector<ReadResult> read_in_processes(const std::string& dir, int seq_len, int batch,
                                          int batches, int procs) {
  std::vector<int> pipes;
  std::vector<pid_t> children;
  for (int rank = 0; rank < procs; ++rank) {
    int fd[2];
    if (pipe(fd) != 0) mamba::throw_error("bench_loader: pipe failed");
    const pid_t pid = fork();
    if (pid < 0) mamba::throw_error("bench_loader: fork failed");
    if (pid == 0) {
      close(fd[0]);
      int status = 0;
      try {
        const ReadResult r = read_batches(dir, seq_len, batch, batches, rank, procs);
        status = write(fd[1], &r, sizeof r) == ssize_t(sizeof r) ? 0 : 1;
      } catch (const mamba::Error& e) {
        std::fprintf(stderr, "rank %d: %s\n", rank, e.what());
        status = 1;
      }
      _exit(status);
    }
    close(fd[1]);
    pipes.push_back(fd[0]);
    children.push_back(pid);
  }
  std::vector<ReadResult> results(static_cast<size_t>(procs));
  bool failed = false;
  for (int rank = 0; rank < procs; ++rank) {
    failed |= read(pipes[rank], &results[rank], sizeof(ReadResult)) != ssize_t(sizeof(ReadResult));
    close(pipes[rank]);
    int status = 0;
    waitpid(children[rank], &status, 0);
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  if (failed) mamba::throw_error("bench_loader: a loader process failed (its error is above)");
  return results;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string dir = flag(argc, argv, "--dir", "/tmp/bench_loader");
    const int shards = std::stoi(flag(argc, argv, "--shards", "10000"));
    const int64_t shard_tokens = std::stoll(flag(argc, argv, "--shard-tokens", "4096"));
    const int seq_len = std::stoi(flag(argc, argv, "--seqlen", "256"));
    const int batch = std::stoi(flag(argc, argv, "--batch", "32"));
    const int batches = std::stoi(flag(argc, argv, "--batches", "200"));
    const int procs = std::stoi(flag(argc, argv, "--procs", "1"));
    const bool verify = flag(argc, argv, "--verify", procs == 1 ? "1" : "0") == "1";

    auto t = std::chrono::steady_clock::now();
    bool wrote = false;
    if (!std::filesystem::exists(mamba::manifest_path(dir)) ||
        mamba::read_manifest(dir).shards.size() != size_t(shards) ||
        mamba::read_manifest(dir).shards.front().tokens != shard_tokens) {
      std::filesystem::remove_all(dir);
      write_corpus(dir, shards, shard_tokens);
      wrote = true;
    }
    const double write_s = seconds_since(t);

    // The manifest's share of opening: a lookup and a stat per shard.
    t = std::chrono::steady_clock::now();
    mamba::ManifestCatalog catalog;
    for (const std::string& path : mamba::glob_sorted(dir + "/train-*.h5")) catalog.entry(path);
    const double manifest_s = seconds_since(t);

    const std::vector<ReadResult> ranks =
        procs == 1 ? std::vector<ReadResult>{read_batches(dir, seq_len, batch, batches, 0, 1)}
                   : read_in_processes(dir, seq_len, batch, batches, procs);
    const auto tokens_per_s = [&](const ReadResult& r) {
      return double(batches) * batch * seq_len / r.read_s;
    };
    ReadResult worst = ranks.front();
    double slowest = tokens_per_s(ranks.front()), fastest = slowest, sum = 0;
    double per_cpu_s = 1e300;  // the least efficient rank's tokens per CPU-second of its process
    for (const ReadResult& r : ranks) {
      worst.open_s = std::max(worst.open_s, r.open_s);
      worst.first_batch_s = std::max(worst.first_batch_s, r.first_batch_s);
      worst.loader_fds = std::max(worst.loader_fds, r.loader_fds);
      worst.peak_rss_mb = std::max(worst.peak_rss_mb, r.peak_rss_mb);
      slowest = std::min(slowest, tokens_per_s(r));
      fastest = std::max(fastest, tokens_per_s(r));
      sum += tokens_per_s(r);
      per_cpu_s = std::min(per_cpu_s, double(batches) * batch * seq_len / r.read_cpu_s);
    }

    double verify_s = 0, verify_mb_per_s = 0;
    if (verify) {
      t = std::chrono::steady_clock::now();
      const mamba::VerifySummary verified = mamba::verify_manifest(dir);
      verify_s = seconds_since(t);
      verify_mb_per_s = verified.bytes / 1e6 / verify_s;
    }

    // Per rank: open_s, first_batch_s, loader_fds and peak_rss_mb are the largest over ranks;
    // tokens_per_s is the slowest rank's. tokens_per_cpu_s (the reads' CPU time, all threads)
    // says what a rank would reach on a core of its own, where other load skews tokens_per_s.
    std::printf(
        "{\"shards\": %d, \"shard_tokens\": %lld, \"corpus_gb\": %.2f, \"procs\": %d, "
        "\"seqlen\": %d, \"batch\": %d, \"wrote\": %s, \"write_s\": %.2f, \"open_s\": %.3f, "
        "\"open_ms_per_shard\": %.4f, \"manifest_s\": %.3f, \"first_batch_s\": %.3f, "
        "\"batches_per_s\": %.1f, \"tokens_per_s\": %.0f, \"tokens_per_s_mean\": %.0f, "
        "\"tokens_per_s_max\": %.0f, \"tokens_per_cpu_s\": %.0f, \"loader_fds\": %d, "
        "\"loader_fd_bound\": %d, \"peak_rss_mb\": "
        "%.1f, "
        "\"verify_s\": %.2f, \"verify_mb_per_s\": %.1f}\n",
        shards, (long long)shard_tokens, 2e-9 * double(shards) * double(shard_tokens), procs,
        seq_len, batch, wrote ? "true" : "false", write_s, worst.open_s,
        1e3 * worst.open_s / shards, manifest_s, worst.first_batch_s,
        slowest / (double(batch) * seq_len), slowest, sum / procs, fastest, per_cpu_s,
        worst.loader_fds, worst.fd_bound, worst.peak_rss_mb, verify_s, verify_mb_per_s);
    return 0;
  } catch (const mamba::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
