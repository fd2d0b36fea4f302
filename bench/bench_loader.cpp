// Loader benchmark on a corpus of many small shards: how long opening it takes (glob, manifest,
// one stat and one header read per shard), how fast shuffled batches come, and how long the full
// check of `mamba prepare --verify` takes. Prints one JSON line.
//   bench_loader [--dir DIR] [--shards N] [--shard-tokens T] [--seqlen L] [--batch B]
//                [--batches K]
// The shards (random GPT-2-sized ids) are written once into DIR and reused when they are there.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "util/error.h"
#include "util/rng.h"

namespace {

std::string flag(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == name) return argv[i + 1];
  }
  return fallback;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
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

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string dir = flag(argc, argv, "--dir", "/tmp/bench_loader");
    const int shards = std::stoi(flag(argc, argv, "--shards", "10000"));
    const int64_t shard_tokens = std::stoll(flag(argc, argv, "--shard-tokens", "4096"));
    const int seq_len = std::stoi(flag(argc, argv, "--seqlen", "256"));
    const int batch = std::stoi(flag(argc, argv, "--batch", "32"));
    const int batches = std::stoi(flag(argc, argv, "--batches", "200"));

    auto t = std::chrono::steady_clock::now();
    bool wrote = false;
    if (!std::filesystem::exists(mamba::manifest_path(dir)) ||
        mamba::read_manifest(dir).shards.size() != size_t(shards)) {
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

    t = std::chrono::steady_clock::now();
    mamba::TokenLoader loader(dir + "/train-*.h5", seq_len, 50280, batch, 0, 1, 1, true);
    const double open_s = seconds_since(t);

    std::vector<int32_t> rows(size_t(batch) * (seq_len + 1));
    t = std::chrono::steady_clock::now();
    for (int b = 0; b < batches; ++b) loader.next(rows.data());
    const double read_s = seconds_since(t);

    t = std::chrono::steady_clock::now();
    const mamba::VerifySummary verified = mamba::verify_manifest(dir);
    const double verify_s = seconds_since(t);

    std::printf(
        "{\"shards\": %d, \"shard_tokens\": %lld, \"wrote\": %s, \"write_s\": %.2f, "
        "\"open_s\": %.3f, \"open_ms_per_shard\": %.4f, \"manifest_s\": %.3f, \"batches_per_s\": "
        "%.1f, "
        "\"tokens_per_s\": %.0f, \"verify_s\": %.2f, \"verify_mb_per_s\": %.1f}\n",
        shards, (long long)shard_tokens, wrote ? "true" : "false", write_s, open_s,
        1e3 * open_s / shards, manifest_s, batches / read_s,
        double(batches) * batch * seq_len / read_s, verify_s, verified.bytes / 1e6 / verify_s);
    return 0;
  } catch (const mamba::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
