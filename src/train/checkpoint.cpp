#include "train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/safetensors.h"
#include "train/weights_io.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "step_";

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kPrefix, static_cast<long long>(step));
  return buf;
}

// Step number of a complete checkpoint directory name, or -1.
int64_t parse_step(const std::string& name) {
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::string(kPrefix).size());
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = parse_step(entry.path().filename().string());
    if (step >= 0 && fs::exists(entry.path() / "trainer.json"))
      found.emplace_back(step, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
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

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw_error("checkpoint error: cannot read ", path.string(),
                ": the checkpoint is incomplete or unreadable");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TrainerState read_trainer_state(const std::string& path) {
  const fs::path trainer = fs::path(path) / "trainer.json";
  TrainerState state;
  try {
    const json j = json::parse(read_text(trainer));
    state.step = j.at("step").get<int64_t>();
    state.tokens_seen = j.at("tokens_seen").get<int64_t>();
    state.loader_epoch = j.at("loader").at("epoch").get<uint64_t>();
    state.loader_sample = j.at("loader").at("sample").get<uint64_t>();
    state.rng = j.at("rng").get<std::array<uint64_t, 4>>();
    state.world = j.at("world").get<int>();
    state.config_yaml = j.at("config").get<std::string>();
  } catch (const json::exception& e) {
    throw_error("checkpoint error: ", trainer.string(), " is malformed (", e.what(),
                "): the checkpoint is damaged; resume from an older one");
  }
  return state;
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

std::string save_checkpoint(const std::string& dir, const ParamLayout& layout,
                            const TrainingTensors& tensors, const TrainerState& state,
                            int keep_last) {
  const fs::path final_path = fs::path(dir) / step_name(state.step);
  const fs::path tmp = fs::path(dir) / (step_name(state.step) + ".tmp");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw_error("checkpoint error: cannot create ", tmp.string(), " (", ec.message(), ")");

  write_safetensors((tmp / "model.safetensors").string(),
                    weight_views(layout, tensors.params.data()), model_metadata(layout.config()));
  std::vector<TensorView> moments = weight_views(layout, tensors.exp_avg.data(), "exp_avg.");
  for (const TensorView& v : weight_views(layout, tensors.exp_avg_sq.data(), "exp_avg_sq.")) {
    moments.push_back(v);
  }
  write_safetensors((tmp / "optimizer.safetensors").string(), moments,
                    {{"steps_taken", std::to_string(tensors.optimizer_steps)}});

  json j;
  j["step"] = state.step;
  j["tokens_seen"] = state.tokens_seen;
  j["loader"] = {{"epoch", state.loader_epoch}, {"sample", state.loader_sample}};
  j["rng"] = state.rng;
  j["world"] = state.world;
  j["config"] = state.config_yaml;
  const std::string text = j.dump(2) + "\n";
  write_file_atomic((tmp / "trainer.json").string(), text.data(), text.size());

  // Replacing an existing checkpoint of the same step (a re-run): move the old one aside first.
  if (fs::exists(final_path)) fs::remove_all(final_path, ec);
  fs::rename(tmp, final_path, ec);
  if (ec)
    throw_error("checkpoint error: cannot rename ", tmp.string(), " to ", final_path.string(), " (",
                ec.message(), ")");
  fsync_directory(dir);

  if (keep_last > 0) {
    auto all = complete_checkpoints(dir);
    for (size_t i = 0; i + keep_last < all.size(); ++i) fs::remove_all(all[i].second, ec);
  }
  return final_path.string();
}

std::string latest_checkpoint(const std::string& dir) {
  const auto all = complete_checkpoints(dir);
  return all.empty() ? "" : all.back().second.string();
}

ModelConfig checkpoint_model_config(const std::string& path) {
  const SafetensorsReader f((fs::path(path) / "model.safetensors").string());
  auto get = [&](const char* key) {
    auto it = f.metadata().find(key);
    if (it == f.metadata().end()) {
      throw_error("checkpoint error: ", f.path(), " has no metadata '", key,
                  "': not a checkpoint of this framework");
    }
    return it->second;
  };
  ModelConfig c;
  c.d_model = std::stoi(get("d_model"));
  c.n_layer = std::stoi(get("n_layer"));
  c.vocab_size = std::stoi(get("vocab_size"));
  c.pad_vocab_multiple = std::stoi(get("pad_vocab_multiple"));
  c.d_state = std::stoi(get("d_state"));
  c.d_conv = std::stoi(get("d_conv"));
  c.expand = std::stoi(get("expand"));
  c.dt_rank = std::stoi(get("dt_rank"));
  c.norm_eps = std::stof(get("norm_eps"));
  return c;
}

void load_checkpoint_weights(const std::string& path, const ParamLayout& layout, float* params) {
  const ModelConfig saved = checkpoint_model_config(path);
  if (saved.describe() != layout.config().describe()) {
    throw_error("checkpoint error: ", path, " was saved for a model with ", saved.describe(),
                " but this run's model has ", layout.config().describe(),
                ": use the checkpoint's model section, or set checkpoint.resume=none");
  }
  const SafetensorsReader f((fs::path(path) / "model.safetensors").string());
  load_weights(f, layout, params);
}

void load_checkpoint(const std::string& path, const ParamLayout& layout, TrainingTensors& tensors,
                     TrainerState& state) {
  tensors.params.resize(layout.total());
  tensors.exp_avg.resize(layout.total());
  tensors.exp_avg_sq.resize(layout.total());
  load_checkpoint_weights(path, layout, tensors.params.data());
  const SafetensorsReader opt((fs::path(path) / "optimizer.safetensors").string());
  load_weights(opt, layout, tensors.exp_avg.data(), "exp_avg.");
  load_weights(opt, layout, tensors.exp_avg_sq.data(), "exp_avg_sq.");
  auto steps = opt.metadata().find("steps_taken");
  if (steps == opt.metadata().end()) {
    throw_error("checkpoint error: ", opt.path(), " has no steps_taken: the checkpoint is damaged");
  }
  tensors.optimizer_steps = std::stoll(steps->second);

  state = read_trainer_state(path);
}

std::string resolve_checkpoint(const std::string& path) {
  if (fs::exists(fs::path(path) / "trainer.json")) return path;
  const std::string latest = latest_checkpoint(path);
  if (latest.empty()) {
    throw_error("checkpoint error: ", path,
                " is neither a checkpoint (no trainer.json) nor a run directory holding one");
  }
  return latest;
}

ExperimentConfig checkpoint_experiment_config(const std::string& path) {
  return parse_experiment_config(read_trainer_state(path).config_yaml,
                                 (fs::path(path) / "trainer.json").string());
}

}  // namespace mamba
