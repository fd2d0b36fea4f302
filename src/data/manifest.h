// The manifest of a shard directory, DIR/manifest.json: `mamba prepare` writes it last and
// atomically, listing every shard of the run with its split, token count, file size and crc32.
// The loader takes only shards a manifest lists, at the listed size, so the shards of a killed or
// failed run (no manifest yet) can never pass for a corpus.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/shard.h"

namespace mamba {

inline constexpr const char* kManifestFile = "manifest.json";
inline constexpr const char* kManifestFormat = "mamba-manifest";
inline constexpr int64_t kManifestVersion = 1;

struct ManifestShard {
  std::string file;  // name inside the manifest's directory
  std::string split;
  int64_t tokens = 0;
  int64_t documents = 0;
  uint64_t bytes = 0;  // file size
  uint32_t crc32 = 0;  // zlib crc32 of the whole file
};

struct ManifestSplit {
  int64_t documents = 0;
  int64_t tokens = 0;
  std::string tokens_sha256;  // of the split's token stream as little-endian uint32
};

struct Manifest {
  std::vector<ManifestShard> shards;            // in write order
  std::map<std::string, ManifestSplit> splits;  // what prepare wrote per split (may be empty)
};

// DIR/manifest.json; the directory of a path without one is ".".
std::string manifest_path(const std::string& dir);
std::string directory_of(const std::string& path);

// Size and crc32 of a finished shard file, which this reads whole.
ManifestShard describe_shard(const ShardInfo& info);

// Atomic: a reader sees the old manifest, the new one, or none.
void write_manifest(const std::string& dir, const Manifest& manifest);
// Throws mamba::Error naming the file when it is missing, not JSON or not a manifest.
Manifest read_manifest(const std::string& dir);

// The manifests of the directories a set of shards lives in, read once each.
class ManifestCatalog {
 public:
  // The entry for `shard_path`, after checking that it is listed and has the listed size, and
  // that every shard its manifest lists exists. Cheap: reads no tokens. Throws mamba::Error
  // naming the file and saying to re-run mamba prepare.
  const ManifestShard& entry(const std::string& shard_path);
  // Checks a shard's header (token count, split) against its entry.
  void check_header(const ShardInfo& info);

 private:
  struct Listing {
    Manifest manifest;
    std::map<std::string, size_t> index;  // file name -> shards position: fast for 10,000s
  };
  std::map<std::string, Listing> by_dir_;
};

// Lists the train-*.h5 and val-*.h5 shards already in `dir` in a new manifest, for shards made
// before prepare wrote manifests. Checks what it can (each opens as a shard of its split, they
// agree on the tokenizer, their numbers run 0000, 0001, ... without a gap, every shard but a
// split's last is as long as the first) but cannot tell a finished run from a killed one: only
// for shards of a run known to have finished. Returns the number of shards listed.
size_t adopt_shards(const std::string& dir);

struct VerifySummary {
  size_t shards = 0;
  uint64_t bytes = 0;
};

// The full check `mamba prepare --verify DIR` runs: every listed shard exists, opens, and has the
// listed size, token count, split and crc32. Throws mamba::Error on the first mismatch.
VerifySummary verify_manifest(const std::string& dir);

}  // namespace mamba
