// A tiny byte-level corpus and a config that trains on it in about a second, for tests that run
// whole training jobs through the CLI; plus readers for what those jobs leave behind.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/shard.h"
#include "io/safetensors.h"
#include "scratch.h"
#include "shard_fixtures.h"
#include "util/rng.h"

namespace mamba::test {

class RunFixture : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = scratch_dir(
        "runs_" + std::string(testing::UnitTest::GetInstance()->current_test_suite()->name()));
    std::filesystem::create_directories(root_ / "data");
    write_corpus((root_ / "data" / "train-0000.h5").string(), "train", 6000, 1);
    write_corpus((root_ / "data" / "val-0000.h5").string(), "val", 1500, 2);
  }

  // n text-like bytes with structure to learn: words from a small vocabulary, spaces, periods.
  static void write_corpus(const std::string& path, const std::string& split, int n,
                           uint64_t seed) {
    ShardInfo info;
    info.vocab_size = 257;
    info.eos_id = 256;
    info.tokenizer = "byte";
    info.split = split;
    const char* words[] = {"the ", "cat ", "sat ", "on ", "mat. ", "a ", "dog ", "ran "};
    Rng rng(seed);
    std::vector<int32_t> tokens;
    while (int(tokens.size()) < n) {
      for (const char* c = words[rng.below(8)]; *c; ++c) tokens.push_back(int32_t(*c));
    }
    tokens.resize(size_t(n));
    write_shard(path, info, tokens, 1);
  }

  // A config in its own fresh directory, checkpointing to <that directory>/ckpt.
  static std::string config(const std::string& name) {
    const std::filesystem::path dir = scratch_dir(root_ / name);
    const std::string path = (dir / "config.yaml").string();
    std::ofstream(path) << "model: {d_model: 16, n_layer: 2, vocab_size: 257, d_state: 4}\n"
                        << "data:\n  train: " << (root_ / "data" / "train-*.h5").string()
                        << "\n  val: " << (root_ / "data" / "val-*.h5").string()
                        << "\n  seq_len: 16\n"
                        << "train: {micro_batch: 4, global_batch: 4, steps: 8, device: cpu, "
                           "seed: 3}\n"
                        << "optim: {lr: 1.0e-2, min_lr: 1.0e-3, warmup: 2}\n"
                        << "checkpoint: {dir: " << (dir / "ckpt").string()
                        << ", interval: 4, keep_last: 0}\n"
                        << "log: {interval: 1, eval_interval: 4, eval_batches: 2}\n";
    return path;
  }

  static std::string dir(const std::string& name) { return (root_ / name / "ckpt").string(); }

  static std::string bytes_of(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

  // The weights and optimizer files of step `step` of runs a and b are byte-identical.
  static void expect_same_checkpoint_bytes(const std::string& a, const std::string& b, int step) {
    char name[32];
    std::snprintf(name, sizeof name, "/step_%08d", step);
    for (const char* file : {"/model.safetensors", "/optimizer.safetensors"}) {
      EXPECT_EQ(bytes_of(dir(a) + name + file), bytes_of(dir(b) + name + file)) << name << file;
    }
  }

  // Every tensor of a safetensors file, concatenated in name order.
  static std::vector<float> tensors(const std::string& file) {
    SafetensorsReader f(file);
    std::vector<float> all;
    for (const std::string& name : f.names()) {
      const std::vector<float> t = f.read_f32(name);
      all.insert(all.end(), t.begin(), t.end());
    }
    return all;
  }

  static bool all_finite(const std::vector<float>& values) {
    for (float v : values) {
      if (!std::isfinite(v)) return false;
    }
    return true;
  }

  // The lines of a metrics file.
  static std::vector<std::string> lines(const std::string& path) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  // The values of one key in the lines of run `name`'s metrics that have it (not null), in order.
  static std::vector<double> metric(const std::string& name, const std::string& key) {
    std::vector<double> values;
    std::ifstream in(dir(name) + "/metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.contains(key) && !j.at(key).is_null()) values.push_back(j.at(key).get<double>());
    }
    return values;
  }

  // Two runs' training logs agree step by step within `tolerance` (relative): loss and pre-clip
  // gradient norm.
  static void expect_same_steps(const std::string& a, const std::string& b, double tolerance) {
    for (const char* key : {"loss", "grad_norm"}) {
      const std::vector<double> x = metric(a, key), y = metric(b, key);
      ASSERT_EQ(x.size(), y.size()) << key;
      ASSERT_FALSE(x.empty()) << key;
      for (size_t i = 0; i < x.size(); ++i) {
        EXPECT_NEAR(x[i], y[i], tolerance * std::abs(y[i])) << key << " of step " << i + 1;
      }
    }
  }

  // ||a - b|| / ||b||; infinite when the sizes differ or b is empty.
  static double relative_difference(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size() || b.empty()) return INFINITY;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      norm += double(b[i]) * b[i];
    }
    return std::sqrt(diff / norm);
  }

  static std::filesystem::path root_;
};

inline std::filesystem::path RunFixture::root_;

}  // namespace mamba::test
