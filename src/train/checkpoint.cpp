#include "train/checkpoint.h"

#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "io/ordered_read.h"
#include "io/safetensors.h"
#include "train/weights_io.h"
#include "util/atomic_file.h"
#include "util/checksum.h"

namespace mamba {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "step_";
constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kTrainerFile = "trainer.json";
// Far beyond any run; keeps step arithmetic and directory names sane.
constexpr int64_t kMaxStep = int64_t{1} << 40;

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

// Step number of a complete checkpoint directory name, or -1.
int64_t parse_step(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::string(kPrefix).size());
  int64_t step = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || step < 0) {
    return -1;
  }
  return step;
}

std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = parse_step(entry.path().filename().string());
    if (step >= 0 && fs::exists(entry.path() / kTrainerFile))
      found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

[[noreturn]] void damaged(const fs::path& file, const std::string& what) {
  throw CheckpointDamaged("checkpoint error: " + file.string() + " " + what +
                          ": the checkpoint is damaged; resume from an older one");
}

// The model section of ModelConfig, as stored in model.safetensors metadata.
std::map<std::string, std::string> model_metadata(const ModelConfig& c) {
  return {{"d_model", std::to_string(c.d_model)},
          {"n_layer", std::to_string(c.n_layer)},
          {"vocab_size", std::to_string(c.vocab_size)},
          {"pad_vocab_multiple", std::to_string(c.pad_vocab_multiple)},
          {"d_state", std::to_string(c.d_state)},
          {"d_conv", std::to_string(c.d_conv)},
          {"expand", std::to_string(c.expand)},
          {"dt_rank", std::to_string(c.rank())},
          {"norm_eps", std::to_string(c.norm_eps)},
          {"format", "mamba-cpp checkpoint 1"}};
}

// What trainer.json says: the state, and the digest of each file it vouches for (none in
// checkpoints written before checksums existed).
struct TrainerRecord {
  TrainerState state;
  std::map<std::string, FileDigest> files;
};

json digest_json(const FileDigest& d) {
  return {{"bytes", d.bytes}, {"crc32", crc32_hex(d.crc32)}};
}

std::string trainer_json(const TrainerState& state,
                         const std::map<std::string, FileDigest>& files) {
  json j;
  j["step"] = state.step;
  j["tokens_seen"] = state.tokens_seen;
  j["skipped_steps"] = state.skipped_steps;
  j["loader"] = {{"epoch", state.loader_epoch}, {"sample", state.loader_sample}};
  for (const SourcePosition& s : state.loader_sources) {
    j["loader"]["sources"].push_back({{"name", s.name}, {"epoch", s.epoch}, {"sample", s.sample}});
  }
  j["rng"] = state.rng;
  j["world"] = state.world;
  j["config"] = state.config_yaml;
  if (!state.gemm_algorithms.empty()) j["gemm_algorithms"] = state.gemm_algorithms;
  for (const auto& [name, digest] : files) j["files"][name] = digest_json(digest);
  // The CRC covers the compact dump of everything else, which parsing and dumping reproduce.
  const std::string body = j.dump();
  j["crc32"] = crc32_hex(crc32_update(0, body.data(), body.size()));
  return j.dump(2) + "\n";
}

template <typename T>
T field(const json& j, const char* key, T lo, T hi, const fs::path& file) {
  const T value = j.at(key).get<T>();
  if (value < lo || value > hi) {
    damaged(file, std::string("holds ") + key + " = " + std::to_string(value) + ", out of range");
  }
  return value;
}

FileDigest parse_digest(const json& j, const fs::path& file) {
  FileDigest d;
  d.bytes = j.at("bytes").get<uint64_t>();
  const std::string hex = j.at("crc32").get<std::string>();
  const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), d.crc32, 16);
  if (hex.size() != 8 || ec != std::errc() || end != hex.data() + hex.size()) {
    damaged(file, "holds a malformed crc32 '" + hex + "'");
  }
  return d;
}

TrainerRecord read_trainer_record(const std::string& path) {
  const fs::path file = fs::path(path) / kTrainerFile;
  std::ifstream in(file);
  if (!in) damaged(file, "cannot be read");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TrainerRecord record;
  TrainerState& state = record.state;
  try {
    json j = json::parse(text);
    if (j.contains("crc32")) {
      const std::string stored = j.at("crc32").get<std::string>();
      j.erase("crc32");
      const std::string body = j.dump();
      if (stored != crc32_hex(crc32_update(0, body.data(), body.size()))) {
        damaged(file, "fails its checksum");
      }
    } else {
      std::fprintf(stderr,
                   "warning: %s has no checksums (written by an older version); loading it "
                   "unverified\n",
                   file.c_str());
    }
    state.step = field<int64_t>(j, "step", 0, kMaxStep, file);
    state.tokens_seen = field<int64_t>(j, "tokens_seen", 0, INT64_MAX, file);
    if (j.contains("skipped_steps")) {
      state.skipped_steps = field<int64_t>(j, "skipped_steps", 0, state.step, file);
    }
    state.loader_epoch = j.at("loader").at("epoch").get<uint64_t>();
    state.loader_sample = j.at("loader").at("sample").get<uint64_t>();
    for (const json& s : j.at("loader").value("sources", json::array())) {
      state.loader_sources.push_back({s.at("name").get<std::string>(),
                                      s.at("epoch").get<uint64_t>(),
                                      s.at("sample").get<uint64_t>()});
    }
    state.rng = j.at("rng").get<std::array<uint64_t, 4>>();
    state.world = field<int>(j, "world", 1, 1 << 24, file);
    state.config_yaml = j.at("config").get<std::string>();
    state.gemm_algorithms = j.value("gemm_algorithms", std::string());
    if (j.contains("files")) {
      for (const auto& [name, digest] : j.at("files").items()) {
        record.files[name] = parse_digest(digest, file);
      }
    }
  } catch (const json::exception& e) {
    damaged(file, std::string("is malformed (") + e.what() + ")");
  }
  const int64_t named = parse_step(fs::path(path).filename().string());
  if (named >= 0 && named != state.step) {
    damaged(file, "says step " + std::to_string(state.step) + " in a directory of step " +
                      std::to_string(named));
  }
  return record;
}

// Checks a file's digest against trainer.json's record of it.
void check_digest(const fs::path& file, const char* name, const FileDigest& actual,
                  const TrainerRecord& record) {
  const auto expected = record.files.find(name);
  if (expected == record.files.end()) {
    if (!record.files.empty()) damaged(file, "is not listed in trainer.json");
  } else if (actual != expected->second) {
    damaged(file, "fails its checksum (" + std::to_string(actual.bytes) + " bytes, crc32 " +
                      crc32_hex(actual.crc32) + "; trainer.json says " +
                      std::to_string(expected->second.bytes) + " bytes, crc32 " +
                      crc32_hex(expected->second.crc32) + ")");
  }
}

// Opens one of the checkpoint's safetensors files and checks it against trainer.json's record.
SafetensorsReader open_verified(const std::string& path, const char* name,
                                const TrainerRecord& record) {
  const fs::path file = fs::path(path) / name;
  std::optional<SafetensorsReader> reader;
  try {
    reader.emplace(file.string());
  } catch (const Error& e) {
    throw CheckpointDamaged(std::string(e.what()) + ": the checkpoint is damaged");
  }
  check_digest(file, name, reader->digest(), record);
  return std::move(*reader);
}

// File: SafetensorsReader or SafetensorsStream.
template <typename File>
int metadata_int(const File& f, const char* key) {
  const auto it = f.metadata().find(key);
  if (it == f.metadata().end()) damaged(f.path(), std::string("has no metadata '") + key + "'");
  int value = 0;
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    damaged(f.path(), std::string("has metadata ") + key + " = '" + text + "', not an integer");
  }
  return value;
}

template <typename File>
ModelConfig model_config_of(const File& f) {
  ModelConfig c;
  c.d_model = metadata_int(f, "d_model");
  c.n_layer = metadata_int(f, "n_layer");
  c.vocab_size = metadata_int(f, "vocab_size");
  c.pad_vocab_multiple = metadata_int(f, "pad_vocab_multiple");
  c.d_state = metadata_int(f, "d_state");
  c.d_conv = metadata_int(f, "d_conv");
  c.expand = metadata_int(f, "expand");
  c.dt_rank = metadata_int(f, "dt_rank");
  const auto eps = f.metadata().find("norm_eps");
  if (eps == f.metadata().end()) damaged(f.path(), "has no metadata 'norm_eps'");
  const auto [end, ec] =
      std::from_chars(eps->second.data(), eps->second.data() + eps->second.size(), c.norm_eps);
  if (ec != std::errc() || end != eps->second.data() + eps->second.size()) {
    damaged(f.path(), "has metadata norm_eps = '" + eps->second + "', not a number");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    damaged(f.path(), std::string("holds model metadata ") + e.what());
  }
  return c;
}

void check_same_model(const std::string& path, const ModelConfig& saved,
                      const ParamLayout& layout) {
  if (saved.describe() != layout.config().describe()) {
    throw_error("checkpoint error: ", path, " was saved for a model with ", saved.describe(),
                " but this run's model has ", layout.config().describe(),
                ": use the checkpoint's model section, or set checkpoint.resume=none");
  }
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(), [](float x) { return std::isfinite(x); });
}

// Moves tmp to final_path; an existing final_path (a re-run of the same step) is exchanged
// atomically with tmp and then removed, so that one complete checkpoint exists at every moment.
void install(const fs::path& tmp, const fs::path& final_path) {
  std::error_code ec;
  if (!fs::exists(final_path)) {
    fs::rename(tmp, final_path, ec);
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) ==
             0) {
    fs::remove_all(tmp, ec);
    ec.clear();
  } else {
    // Filesystems without the exchange: the old copy stays complete under another name until
    // the new one is in place.
    const fs::path old = final_path.string() + ".replaced";
    fs::remove_all(old, ec);
    fs::rename(final_path, old, ec);
    if (!ec) fs::rename(tmp, final_path, ec);
    if (!ec) fs::remove_all(old, ec);
  }
  if (ec) {
    throw_error("checkpoint error: cannot rename ", tmp.string(), " to ", final_path.string(), " (",
                ec.message(), ")");
  }
}

}  // namespace

void set_aside(const std::string& dir_path) {
  const fs::path path = dir_path;
  fs::path target = path.string() + ".corrupt";
  for (int n = 2; fs::exists(target); ++n) target = path.string() + ".corrupt." + std::to_string(n);
  std::error_code ec;
  fs::rename(path, target, ec);
  if (ec) {
    throw_error("checkpoint error: cannot rename the damaged checkpoint ", path.string(), " to ",
                target.string(), " (", ec.message(), "): move it away by hand");
  }
  std::fprintf(stderr, "warning: renamed the damaged checkpoint to %s (kept for inspection)\n",
               target.c_str());
}

namespace {

// Loads read large chunks with several threads, ahead of the uploads (bounded host memory).
constexpr size_t kLoadChunkBytes = size_t{64} << 20;
constexpr int kLoadThreads = 4;

SafetensorsStream open_stream(const std::string& path, const char* name) {
  try {
    return SafetensorsStream((fs::path(path) / name).string());
  } catch (const Error& e) {
    throw CheckpointDamaged(std::string(e.what()) + ": the checkpoint is damaged");
  }
}

// Runs check, which may refuse the file as written for another model; streaming judges the
// header before the file's checksum is known, so a refusal first makes sure the header is not
// merely damaged.
template <typename Check>
void check_header(const std::string& path, const char* name, const TrainerRecord& record,
                  const Check& check) {
  try {
    check();
  } catch (const CheckpointDamaged&) {
    throw;
  } catch (const Error&) {
    const fs::path file = fs::path(path) / name;
    check_digest(file, name, digest_file(file.string()), record);
    throw;
  }
}

// Throws unless f holds `tensor` as F32 of t's shape: a file written for another model.
void check_layout_tensor(const SafetensorsStream& f, const std::string& tensor,
                         const ParamTensor& t, const ParamLayout& layout) {
  if (!f.has(tensor)) {
    throw_error("weights error: ", f.path(), " has no tensor ", tensor,
                ": it was not written for a model of shape ", layout.config().describe());
  }
  if (f.info(tensor).shape != t.shape || f.info(tensor).dtype != DType::F32) {
    throw_error("weights error: ", f.path(), ": tensor '", tensor,
                "' is not F32 of the shape this model's layout has: it was not written for a "
                "model of shape ",
                layout.config().describe());
  }
}

// Streams the tensors (prefix + reference name) -> checkpoint tensor index of a checkpoint file
// to sink, checks the file's digest, and tells whether every value was finite. Each tensor must
// be there as F32 with its layout's shape.
bool stream_tensors(const std::string& path, const char* name, const SafetensorsStream& f,
                    const TrainerRecord& record, const ParamLayout& layout,
                    const std::vector<std::pair<std::string, int>>& prefixes,
                    const CheckpointSink& sink) {
  std::map<std::string, std::pair<int, int64_t>> targets;  // name -> (index, layout offset)
  check_header(path, name, record, [&] {
    for (const auto& [prefix, index] : prefixes) {
      for (const ParamTensor& t : layout.tensors()) {
        const std::string tensor = prefix + t.name;
        check_layout_tensor(f, tensor, t, layout);
        targets[tensor] = {index, t.offset};
      }
    }
  });
  bool finite = true;
  const FileDigest digest = f.read(
      [&](const std::string& tensor, const TensorInfo&, uint64_t offset, const uint8_t* data,
          size_t size) {
        const auto target = targets.find(tensor);
        if (target == targets.end()) return;
        if (offset % sizeof(float) != 0 || size % sizeof(float) != 0 ||
            reinterpret_cast<uintptr_t>(data) % alignof(float) != 0) {
          damaged(f.path(), "has tensor data not aligned to 4 bytes");
        }
        const auto* values = reinterpret_cast<const float*>(data);
        const int64_t n = int64_t(size / sizeof(float));
        finite =
            finite && std::all_of(values, values + n, [](float x) { return std::isfinite(x); });
        sink(target->second.first, target->second.second + int64_t(offset / sizeof(float)), values,
             n);
      },
      kLoadChunkBytes, kLoadThreads);
  check_digest(fs::path(path) / name, name, digest, record);
  return finite;
}

std::vector<TensorView> moment_views(const ParamLayout& layout, const float* exp_avg,
                                     const float* exp_avg_sq) {
  std::vector<TensorView> moments = weight_views(layout, exp_avg, "exp_avg.");
  for (const TensorView& v : weight_views(layout, exp_avg_sq, "exp_avg_sq.")) {
    moments.push_back(v);
  }
  return moments;
}

std::map<std::string, std::string> optimizer_metadata(int64_t optimizer_steps) {
  return {{"steps_taken", std::to_string(optimizer_steps)}};
}

// Writes the files into step_XXXXXXXX.tmp, installs it and rotates keep_last. fetch null: the
// source is host memory.
std::string write_checkpoint(const std::string& dir, const ParamLayout& layout,
                             const CheckpointSource& source, const FetchBytes* fetch,
                             size_t chunk_bytes, const TrainerState& state, int keep_last) {
  const fs::path tmp = begin_checkpoint(dir, state.step);
  auto write = [&](const char* name, const std::vector<TensorView>& views,
                   const std::map<std::string, std::string>& metadata) {
    const std::string file = (tmp / name).string();
    return fetch ? write_safetensors_fetched(file, views, metadata, *fetch, chunk_bytes)
                 : write_safetensors(file, views, metadata);
  };
  std::map<std::string, FileDigest> files;
  files[kModelFile] =
      write(kModelFile, weight_views(layout, source.params), model_metadata(layout.config()));
  files[kOptimizerFile] =
      write(kOptimizerFile, moment_views(layout, source.exp_avg, source.exp_avg_sq),
            optimizer_metadata(source.optimizer_steps));
  return complete_checkpoint(dir, tmp.string(), state, files, keep_last);
}

// The tensors of one moment in optimizer.safetensors, by checkpoint tensor index (1, 2).
struct MomentPrefix {
  const char* prefix;
  int index;
};
constexpr MomentPrefix kMoments[] = {{"exp_avg.", 1}, {"exp_avg_sq.", 2}};

// The optimizer's steps_taken, checked against trainer.json's step.
int64_t steps_taken(const SafetensorsStream& opt, const TrainerRecord& record) {
  int64_t optimizer_steps = 0;
  const auto steps = opt.metadata().find("steps_taken");
  if (steps == opt.metadata().end()) damaged(opt.path(), "has no steps_taken");
  const std::string& text = steps->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), optimizer_steps);
  if (ec != std::errc() || end != text.data() + text.size() || optimizer_steps < 0 ||
      optimizer_steps > record.state.step) {
    damaged(opt.path(), "has steps_taken = '" + text + "'");
  }
  return optimizer_steps;
}

// Streams the moments of slices.ranges from opt (stored in the layout's order) to sink.
bool stream_moment_slices(const std::string& path, const SafetensorsStream& opt,
                          const TrainerRecord& record, const ParamLayout& layout,
                          const CheckpointSink& sink, MomentSlices& slices) {
  const int64_t n = layout.total();
  check_header(path, kOptimizerFile, record, [&] {
    for (const MomentPrefix& m : kMoments) {
      for (const ParamTensor& t : layout.tensors()) {
        const std::string tensor = m.prefix + t.name;
        check_layout_tensor(opt, tensor, t, layout);
        const uint64_t at = uint64_t((m.index - 1) * n + t.offset) * sizeof(float);
        if (opt.info(tensor).begin != at) {
          throw_error("checkpoint error: ", opt.path(), " does not hold tensor ", tensor,
                      " where this program writes it (a file written by another tool?): resume "
                      "it with dist.shard_optimizer=false");
        }
      }
    }
  });
  const uint64_t start = opt.data_start();
  std::vector<FileExtent> extents;
  if (slices.header) extents.push_back({0, start});
  for (const MomentPrefix& m : kMoments) {
    for (const ShardRange& r : slices.ranges) {
      const uint64_t at = uint64_t((m.index - 1) * n + r.begin) * sizeof(float);
      extents.push_back({start + at, uint64_t(r.count) * sizeof(float)});
    }
  }
  bool finite = true;
  const std::vector<FileDigest> digests = read_extents_in_order(
      opt.path(), extents, kLoadChunkBytes, kLoadThreads,
      [&](uint64_t offset, const uint8_t* data, size_t size) {
        if (offset < start) return;  // the header
        if (reinterpret_cast<uintptr_t>(data) % alignof(float) != 0) {
          damaged(opt.path(), "has tensor data not aligned to 4 bytes");
        }
        const auto* values = reinterpret_cast<const float*>(data);
        const int64_t count = int64_t(size / sizeof(float));
        const int64_t at = int64_t((offset - start) / sizeof(float));
        finite =
            finite && std::all_of(values, values + count, [](float x) { return std::isfinite(x); });
        sink(at < n ? 1 : 2, at % n, values, count);
      });
  slices.pieces.clear();
  for (size_t e = 0; e < extents.size(); ++e) {
    slices.pieces.push_back({extents[e].offset, digests[e].bytes, digests[e].crc32});
  }
  slices.file_bytes = fs::file_size(opt.path());
  const auto expected = record.files.find(kOptimizerFile);
  if (expected != record.files.end()) {
    slices.expected = expected->second;
  } else if (!record.files.empty()) {
    damaged(opt.path(), "is not listed in trainer.json");
  }
  return finite;
}

}  // namespace

void check_checkpoint_dir_writable(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    throw_error("checkpoint error: cannot create checkpoint.dir ", dir, " (", ec.message(),
                "): choose a writable checkpoint.dir");
  }
  const std::string probe = (fs::path(dir) / ".write_test").string();
  try {
    write_file_atomic(probe, "", 0);
  } catch (const Error& e) {
    throw_error("checkpoint error: checkpoint.dir ", dir, " is not writable (", e.what(),
                "): choose a writable checkpoint.dir");
  }
  fs::remove(probe, ec);
}

void throw_nonfinite_checkpoint(const std::string& dir, int64_t step) {
  throw_error("checkpoint error: the weights or optimizer moments of step ", step,
              " hold NaN or infinity; no checkpoint was written (the newest one in ", dir,
              " is the last good state)");
}

std::string save_checkpoint(const std::string& dir, const ParamLayout& layout,
                            const TrainingTensors& tensors, const TrainerState& state,
                            int keep_last) {
  if (!all_finite(tensors.params) || !all_finite(tensors.exp_avg) ||
      !all_finite(tensors.exp_avg_sq)) {
    throw_nonfinite_checkpoint(dir, state.step);
  }
  const CheckpointSource source{tensors.params.data(), tensors.exp_avg.data(),
                                tensors.exp_avg_sq.data(), tensors.optimizer_steps};
  return write_checkpoint(dir, layout, source, nullptr, 0, state, keep_last);
}

std::string save_checkpoint_fetched(const std::string& dir, const ParamLayout& layout,
                                    const CheckpointSource& source, const FetchBytes& fetch,
                                    size_t chunk_bytes, const TrainerState& state, int keep_last) {
  return write_checkpoint(dir, layout, source, &fetch, chunk_bytes, state, keep_last);
}

std::string begin_checkpoint(const std::string& dir, int64_t step) {
  const fs::path tmp = fs::path(dir) / (step_name(step) + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw_error("checkpoint error: cannot create ", tmp.string(), " (", ec.message(), ")");
  return tmp.string();
}

std::string complete_checkpoint(const std::string& dir, const std::string& tmp,
                                const TrainerState& state,
                                const std::map<std::string, FileDigest>& files, int keep_last) {
  const fs::path final_path = fs::path(dir) / step_name(state.step);
  const std::string text = trainer_json(state, files);
  write_file_atomic((fs::path(tmp) / kTrainerFile).string(), text.data(), text.size());
  install(tmp, final_path);
  fsync_directory(dir);
  if (keep_last > 0) {
    std::error_code ec;
    auto all = complete_checkpoints(dir);
    for (size_t i = 0; i + keep_last < all.size(); ++i) fs::remove_all(all[i].second, ec);
  }
  return final_path.string();
}

CheckpointFilePlan model_file_plan(const ParamLayout& layout) {
  const std::vector<TensorView> views = weight_views(layout, nullptr);
  int64_t at = 0;
  for (const ParamTensor& t : layout.tensors()) {
    // What lets a process write any range of the flat buffer at a known place in the file.
    if (t.offset != at) throw_error("internal error: the parameter layout is not contiguous");
    at += t.numel;
  }
  if (at != layout.total()) throw_error("internal error: the parameter layout is not contiguous");
  const std::string header = safetensors_header(kModelFile, views, model_metadata(layout.config()));
  return {kModelFile, header, header.size() + uint64_t(layout.total()) * sizeof(float)};
}

CheckpointFilePlan optimizer_file_plan(const ParamLayout& layout, int64_t optimizer_steps) {
  const std::string header = safetensors_header(
      kOptimizerFile, moment_views(layout, nullptr, nullptr), optimizer_metadata(optimizer_steps));
  return {kOptimizerFile, header, header.size() + 2 * uint64_t(layout.total()) * sizeof(float)};
}

std::vector<std::string> list_checkpoints(const std::string& dir) {
  std::vector<std::string> paths;
  for (const auto& [step, path] : complete_checkpoints(dir)) paths.push_back(path.string());
  return paths;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  return (fs::path(dir) / step_name(step)).string();
}

std::string latest_checkpoint(const std::string& dir) {
  const auto all = complete_checkpoints(dir);
  return all.empty() ? "" : all.back().second.string();
}

ModelConfig checkpoint_model_config(const std::string& path) {
  return model_config_of(open_verified(path, kModelFile, read_trainer_record(path)));
}

void load_checkpoint_weights(const std::string& path, const ParamLayout& layout, float* params) {
  const SafetensorsReader f = open_verified(path, kModelFile, read_trainer_record(path));
  check_same_model(path, model_config_of(f), layout);
  load_weights(f, layout, params);
}

namespace {

// Loads a checkpoint; slices null: every moment, the optimizer file checked here.
int64_t load(const std::string& path, const ParamLayout& layout, const CheckpointSink& sink,
             TrainerState& state, MomentSlices* slices) {
  const TrainerRecord record = read_trainer_record(path);
  const SafetensorsStream model = open_stream(path, kModelFile);
  check_header(path, kModelFile, record,
               [&] { check_same_model(path, model_config_of(model), layout); });
  bool finite = stream_tensors(path, kModelFile, model, record, layout, {{"", 0}}, sink);
  const SafetensorsStream opt = open_stream(path, kOptimizerFile);
  const int64_t optimizer_steps = steps_taken(opt, record);
  if (slices) {
    finite = stream_moment_slices(path, opt, record, layout, sink, *slices) && finite;
  } else {
    std::vector<std::pair<std::string, int>> prefixes;
    for (const MomentPrefix& m : kMoments) prefixes.emplace_back(m.prefix, m.index);
    finite = stream_tensors(path, kOptimizerFile, opt, record, layout, prefixes, sink) && finite;
  }
  if (!finite) damaged(path, "holds NaN or infinity");
  state = record.state;
  return optimizer_steps;
}

}  // namespace

int64_t load_checkpoint(const std::string& path, const ParamLayout& layout,
                        const CheckpointSink& sink, TrainerState& state) {
  return load(path, layout, sink, state, nullptr);
}

int64_t load_checkpoint_slices(const std::string& path, const ParamLayout& layout,
                               const CheckpointSink& sink, TrainerState& state,
                               MomentSlices& slices) {
  return load(path, layout, sink, state, &slices);
}

void load_checkpoint(const std::string& path, const ParamLayout& layout, TrainingTensors& tensors,
                     TrainerState& state) {
  std::vector<float>* buffers[] = {&tensors.params, &tensors.exp_avg, &tensors.exp_avg_sq};
  for (std::vector<float>* b : buffers) b->resize(layout.total());
  tensors.optimizer_steps = load_checkpoint(
      path, layout,
      [&](int tensor, int64_t at, const float* values, int64_t n) {
        std::copy(values, values + n, buffers[tensor]->data() + at);
      },
      state);
}

std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(fs::path(path) / kTrainerFile)) return path;
  const std::string latest = latest_checkpoint(path);
  if (latest.empty()) {
    throw_error("checkpoint error: ", path,
                " is neither a checkpoint (no trainer.json) nor a run directory holding one");
  }
  return latest;
}

ExperimentConfig checkpoint_experiment_config(const std::string& path) {
  const fs::path file = fs::path(path) / kTrainerFile;
  const std::string yaml = read_trainer_record(path).state.config_yaml;
  try {
    return parse_experiment_config(yaml, file.string(), {}, Sources::Ignore);
  } catch (const Error& e) {
    damaged(file, std::string("holds a config that does not parse (") + e.what() + ")");
  }
}

}  // namespace mamba
