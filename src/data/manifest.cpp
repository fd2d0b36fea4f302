#include "data/manifest.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "data/text.h"
#include "util/atomic_file.h"
#include "util/checksum.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;

namespace {

const char* const kRerun = "re-run mamba prepare";

// The digest of a shard file, with the error worded for the data pipeline.
FileDigest shard_digest(const std::string& path) {
  try {
    return digest_file(path);
  } catch (const Error& e) {
    throw_error("data error: ", e.what());
  }
}

uint64_t file_size_or_throw(const std::string& path, const std::string& manifest,
                            const std::string& listed_as) {
  std::error_code ec;
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) {
    throw_error("data error: ", manifest, " lists ", listed_as, ", which is missing (",
                ec.message(), "): the corpus is incomplete; ", kRerun);
  }
  return uint64_t(size);
}

Manifest parse_manifest(const std::string& path, const std::string& text) {
  const auto bad = [&](const std::string& why) {
    throw_error("data error: ", path, " is not a valid shard manifest (", why, "): ", kRerun);
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    bad("not JSON");
  }
  Manifest m;
  try {
    if (j.at("format").get<std::string>() != kManifestFormat) bad("format is not mamba-manifest");
    if (j.at("format_version").get<int64_t>() != kManifestVersion) {
      throw_error("data error: ", path, " has format_version ", j.at("format_version").dump(),
                  " but this mamba reads version ", kManifestVersion,
                  ": use the matching mamba or ", kRerun);
    }
    for (const auto& s : j.at("shards")) {
      ManifestShard e;
      e.file = s.at("file").get<std::string>();
      e.split = s.at("split").get<std::string>();
      e.tokens = s.at("tokens").get<int64_t>();
      e.documents = s.at("documents").get<int64_t>();
      e.bytes = s.at("bytes").get<uint64_t>();
      const std::string crc = s.at("crc32").get<std::string>();
      char* end = nullptr;
      e.crc32 = uint32_t(std::strtoul(crc.c_str(), &end, 16));
      if (crc.size() != 8 || *end != '\0') bad("crc32 '" + crc + "' is not 8 hex digits");
      if (e.file.empty() || e.file.find('/') != std::string::npos) {
        bad("shard file '" + e.file + "' is not a plain file name");
      }
      m.shards.push_back(std::move(e));
    }
    if (j.contains("splits")) {
      for (const auto& [name, s] : j.at("splits").items()) {
        m.splits[name] = {s.at("documents").get<int64_t>(), s.at("tokens").get<int64_t>(),
                          s.at("tokens_sha256").get<std::string>()};
      }
    }
  } catch (const nlohmann::json::exception& e) {
    bad(e.what());
  }
  return m;
}

}  // namespace

std::string directory_of(const std::string& path) {
  const std::string dir = fs::path(path).parent_path().string();
  return dir.empty() ? "." : dir;
}

std::string manifest_path(const std::string& dir) {
  return (fs::path(dir) / kManifestFile).string();
}

ManifestShard describe_shard(const ShardInfo& info) {
  ManifestShard e;
  e.file = fs::path(info.path).filename().string();
  e.split = info.split;
  e.tokens = info.num_tokens;
  e.documents = info.documents;
  const FileDigest digest = shard_digest(info.path);
  e.bytes = digest.bytes;
  e.crc32 = digest.crc32;
  return e;
}

void write_manifest(const std::string& dir, const Manifest& manifest) {
  nlohmann::json shards = nlohmann::json::array();
  for (const ManifestShard& e : manifest.shards) {
    shards.push_back({{"file", e.file},
                      {"split", e.split},
                      {"tokens", e.tokens},
                      {"documents", e.documents},
                      {"bytes", e.bytes},
                      {"crc32", crc32_hex(e.crc32)}});
  }
  nlohmann::json splits = nlohmann::json::object();
  for (const auto& [name, s] : manifest.splits) {
    splits[name] = {
        {"documents", s.documents}, {"tokens", s.tokens}, {"tokens_sha256", s.tokens_sha256}};
  }
  const nlohmann::json j = {{"format", kManifestFormat},
                            {"format_version", kManifestVersion},
                            {"splits", splits},
                            {"shards", shards}};
  const std::string text = j.dump(1) + "\n";
  write_file_atomic(manifest_path(dir), text.data(), text.size());
}

Manifest read_manifest(const std::string& dir) {
  const std::string path = manifest_path(dir);
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    throw_error("data error: ", path, " does not exist: ", kRerun);
  }
  return parse_manifest(path, read_file(path));
}

const ManifestShard& ManifestCatalog::entry(const std::string& shard_path) {
  const std::string dir = directory_of(shard_path);
  const std::string manifest = manifest_path(dir);
  auto it = by_dir_.find(dir);
  if (it == by_dir_.end()) {
    std::error_code ec;
    if (!fs::exists(manifest, ec)) {
      throw_error("data error: shard ", shard_path, " is not covered by a manifest (", manifest,
                  " does not exist): the mamba prepare run that wrote it did not finish, or it "
                  "was not made by mamba prepare; ",
                  kRerun);
    }
    Listing listing{read_manifest(dir), {}};
    // A lost shard would silently shorten the split; stat each listed file once (cheap even for
    // thousands of shards).
    for (size_t k = 0; k < listing.manifest.shards.size(); ++k) {
      const ManifestShard& e = listing.manifest.shards[k];
      file_size_or_throw((fs::path(dir) / e.file).string(), manifest, e.file);
      listing.index.emplace(e.file, k);
    }
    it = by_dir_.emplace(dir, std::move(listing)).first;
  }
  const std::string name = fs::path(shard_path).filename().string();
  const auto found = it->second.index.find(name);
  if (found == it->second.index.end()) {
    throw_error("data error: shard ", shard_path, " is not listed in ", manifest,
                ": it is left over from an unfinished or different run; remove it, narrow the "
                "pattern, or ",
                kRerun, " into a fresh directory");
  }
  const ManifestShard& e = it->second.manifest.shards[found->second];
  const uint64_t size = file_size_or_throw(shard_path, manifest, e.file);
  if (size != e.bytes) {
    throw_error("data error: shard ", shard_path, " has ", size, " bytes but ", manifest, " lists ",
                e.bytes, ": it was truncated or changed after mamba prepare wrote it; ", kRerun);
  }
  return e;
}

void ManifestCatalog::check_header(const ShardInfo& info) {
  const ManifestShard& e = entry(info.path);
  const std::string manifest = manifest_path(directory_of(info.path));
  if (info.num_tokens != e.tokens || info.split != e.split) {
    throw_error("data error: shard ", info.path, " holds ", info.num_tokens, " ", info.split,
                " tokens but ", manifest, " lists ", e.tokens, " ", e.split,
                " tokens: it was changed after mamba prepare wrote it; ", kRerun);
  }
}

size_t adopt_shards(const std::string& dir) {
  const std::string path = manifest_path(dir);
  std::error_code ec;
  if (fs::exists(path, ec)) {
    throw_error("data error: ", path, " exists already: these shards have a manifest (check them ",
                "with mamba prepare --verify ", dir, ")");
  }
  std::vector<ShardInfo> infos;
  for (const char* split : {"train", "val"}) {
    const std::vector<std::string> paths = glob_sorted((fs::path(dir) / split).string() + "-*.h5");
    const size_t split_begin = infos.size();
    for (size_t k = 0; k < paths.size(); ++k) {
      char expected[32];
      std::snprintf(expected, sizeof expected, "%s-%04zu.h5", split, k);
      if (fs::path(paths[k]).filename() != expected) {
        throw_error("data error: ", paths[k], " is not ", expected, ": the ", split, " shards of ",
                    dir, " have a gap or a stray file; ", kRerun);
      }
      infos.push_back(read_shard_info(paths[k]));
      const ShardInfo &info = infos.back(), &first = infos.front();
      if (info.split != split) {
        throw_error("data error: shard ", paths[k], " holds the split '", info.split,
                    "': ", kRerun);
      }
      if (k + 1 < paths.size() && info.num_tokens != infos[split_begin].num_tokens) {
        throw_error("data error: shard ", paths[k], " holds ", info.num_tokens,
                    " tokens, unlike the shards before it: not one prepare run; ", kRerun);
      }
      if (info.tokenizer_sha256 != first.tokenizer_sha256 || info.vocab_size != first.vocab_size ||
          info.eos_id != first.eos_id) {
        throw_error("data error: shard ", paths[k], " was made with another tokenizer than ",
                    first.path, ": not one prepare run; ", kRerun);
      }
    }
  }
  if (infos.empty()) throw_error("data error: ", dir, " holds no train-*.h5 or val-*.h5 shards");
  Manifest manifest;
  for (const ShardInfo& info : infos) manifest.shards.push_back(describe_shard(info));
  write_manifest(dir, manifest);
  return infos.size();
}

VerifySummary verify_manifest(const std::string& dir) {
  const Manifest manifest = read_manifest(dir);
  const std::string path = manifest_path(dir);
  if (manifest.shards.empty()) throw_error("data error: ", path, " lists no shards: ", kRerun);
  ManifestCatalog catalog;
  VerifySummary summary;
  for (const ManifestShard& e : manifest.shards) {
    const std::string shard = (fs::path(dir) / e.file).string();
    catalog.check_header(read_shard_info(shard));
    const FileDigest digest = shard_digest(shard);
    if (digest.crc32 != e.crc32 || digest.bytes != e.bytes) {
      throw_error("data error: shard ", shard, " has crc32 ", crc32_hex(digest.crc32), " but ",
                  path, " lists ", crc32_hex(e.crc32),
                  ": its contents changed after mamba prepare wrote it; ", kRerun);
    }
    ++summary.shards;
    summary.bytes += digest.bytes;
  }
  return summary;
}

}  // namespace mamba
