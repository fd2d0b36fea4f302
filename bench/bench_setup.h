// What the training benchmarks share: flags, the config a --model names, the key=value
// overrides on the command line, and a shard of random tokens to feed the Trainer.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/manifest.h"
#include "data/shard.h"
#include "util/clock.h"
#include "util/error.h"
#include "util/rng.h"

namespace bench {

using mamba::seconds_since;

// The median of v (the upper middle value of an even count); -1 when v is empty.
inline double median(std::vector<double> v) {
  if (v.empty()) return -1.0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The value after `name`, or fallback.
inline std::string flag(int argc, char** argv, const char* name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], name)) return argv[i + 1];
  }
  return fallback;
}

// --config FILE, or configs/mamba-NAME.yaml (else configs/NAME.yaml) for --model NAME.
inline std::string config_path(int argc, char** argv, const char* program) {
  const std::string given = flag(argc, argv, "--config", "");
  if (!given.empty()) return given;
  const std::string model = flag(argc, argv, "--model", "tiny");
  for (const std::string& name : {"mamba-" + model + ".yaml", model + ".yaml"}) {
    const std::filesystem::path path = std::filesystem::path(MAMBA_CONFIG_DIR) / name;
    if (std::filesystem::exists(path)) return path.string();
  }
  mamba::throw_error(program, ": no config for --model ", model, " in ", MAMBA_CONFIG_DIR);
}

// The arguments that are not --flag value pairs: key=value config overrides.
inline std::vector<std::string> overrides(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-' && argv[i][1] == '-') {
      ++i;
    } else {
      out.push_back(argv[i]);
    }
  }
  return out;
}

// Random tokens below vocab in one shard with its manifest, as mamba prepare would leave them.
inline void write_random_shard(const std::string& path, int vocab, int64_t tokens) {
  mamba::ShardInfo info;
  info.vocab_size = vocab;
  info.eos_id = vocab - 1;
  info.tokenizer = "random";
  info.split = "train";
  mamba::ShardWriter writer(path, info);
  mamba::Rng rng(1);
  std::vector<int32_t> chunk(1 << 16);
  for (int64_t done = 0; done < tokens; done += int64_t(chunk.size())) {
    for (int32_t& t : chunk) t = int32_t(rng.below(uint64_t(vocab)));
    writer.append(chunk.data(), chunk.size());
  }
  writer.end_document();
  mamba::Manifest manifest;
  manifest.shards.push_back(mamba::describe_shard(writer.finish()));
  mamba::write_manifest(mamba::directory_of(path), manifest);
}

}  // namespace bench
