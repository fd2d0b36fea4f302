#include "train/hugging_face.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/tokenizer.h"
#include "train/checkpoint.h"
#include "train/experiment_config.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace mamba {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kConfigFile = "config.json";
constexpr const char* kWeightsFile = "model.safetensors";

json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw_error("weights error: cannot read ", file.string());
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw_error("weights error: ", file.string(), " is not valid JSON (", e.what(), ")");
  }
}

// transformers' MambaConfig fields -> ModelConfig. Its vocab_size is the embedding's (padded).
ModelConfig model_config_of(const json& j, const fs::path& file) {
  ModelConfig c;
  try {
    if (j.value("model_type", "") != "mamba") {
      throw_error("weights error: ", file.string(), " has model_type '", j.value("model_type", ""),
                  "': expected a Mamba model (model_type mamba)");
    }
    c.d_model = j.at("hidden_size").get<int>();
    c.n_layer = j.at("num_hidden_layers").get<int>();
    c.vocab_size = j.at("vocab_size").get<int>();
    c.pad_vocab_multiple = c.vocab_size % 8 == 0 ? 8 : 1;
    c.d_state = j.at("state_size").get<int>();
    c.d_conv = j.at("conv_kernel").get<int>();
    c.expand = j.at("expand").get<int>();
    const json& rank = j.at("time_step_rank");
    c.dt_rank = rank.is_string() ? 0 : rank.get<int>();
    c.norm_eps = j.at("layer_norm_epsilon").get<float>();
  } catch (const json::exception& e) {
    throw_error("weights error: ", file.string(), " is not a Mamba config.json (", e.what(), ")");
  }
  try {
    c.validate();
  } catch (const Error& e) {
    throw_error("weights error: ", file.string(), " holds ", e.what());
  }
  return c;
}

json hugging_face_config(const ModelConfig& c, int eos_id, DType dtype) {
  return {{"architectures", {"MambaForCausalLM"}},
          {"model_type", "mamba"},
          {"vocab_size", c.padded_vocab()},
          {"hidden_size", c.d_model},
          {"intermediate_size", c.d_inner()},
          {"state_size", c.d_state},
          {"num_hidden_layers", c.n_layer},
          {"layer_norm_epsilon", c.norm_eps},
          {"expand", c.expand},
          {"conv_kernel", c.d_conv},
          {"time_step_rank", c.rank()},
          {"use_bias", false},
          {"use_conv_bias", true},
          {"hidden_act", "silu"},
          {"residual_in_fp32", true},
          {"tie_word_embeddings", true},
          {"bos_token_id", eos_id},
          {"eos_token_id", eos_id},
          {"pad_token_id", eos_id},
          {"torch_dtype", dtype == DType::BF16 ? "bfloat16" : "float32"}};
}

void write_text(const fs::path& file, const std::string& text) {
  write_file_atomic(file.string(), text.data(), text.size());
}

void copy_atomic(const fs::path& from, const fs::path& to) {
  std::ifstream in(from, std::ios::binary);
  if (!in) throw_error("export error: cannot read the tokenizer file ", from.string());
  write_text(to, std::string(std::istreambuf_iterator<char>(in), {}));
}

// The tokenizer files a data.tokenizer spec names, copied under the names transformers reads:
// tokenizer.json as it is, GPT-2's encoder.json + vocab.bpe as vocab.json + merges.txt.
void export_tokenizer(const std::string& spec, const fs::path& out) {
  if (spec.empty() || spec == "byte") return;
  fs::path dir = fs::is_directory(spec) ? fs::path(spec) : fs::path(spec).parent_path();
  if (!fs::is_directory(spec) && fs::path(spec).filename() == "tokenizer.json") {
    copy_atomic(spec, out / "tokenizer.json");
    return;
  }
  if (fs::exists(dir / "tokenizer.json")) {
    copy_atomic(dir / "tokenizer.json", out / "tokenizer.json");
  } else {
    copy_atomic(dir / "encoder.json", out / "vocab.json");
    copy_atomic(dir / "vocab.bpe", out / "merges.txt");
    write_text(out / "tokenizer_config.json",
               json{{"tokenizer_class", "GPT2Tokenizer"}}.dump(2) + "\n");
  }
}

}  // namespace

WeightsSource find_weights(const std::string& path) {
  WeightsSource s;
  s.path = path;
  const fs::path p(path);
  if (fs::is_directory(p) && fs::exists(p / "trainer.json")) {
    s.checkpoint = path;
    s.model = checkpoint_model_config(path);
    return s;
  }
  if (fs::is_directory(p)) {
    if (!fs::exists(p / kWeightsFile)) {
      throw_error("config error: model.init_from = ", path, " holds no ", kWeightsFile,
                  " (nor trainer.json): expected a checkpoint, a Hugging Face folder or a "
                  "safetensors file");
    }
    s.file = (p / kWeightsFile).string();
    if (fs::exists(p / kConfigFile))
      s.model = model_config_of(read_json(p / kConfigFile), p / kConfigFile);
  } else if (fs::exists(p)) {
    s.file = path;
  } else {
    throw_error("config error: model.init_from = ", path, " does not exist");
  }
  const SafetensorsReader f(s.file);
  s.naming = f.has(tensor_name("backbone.embedding.weight", Naming::HuggingFace))
                 ? Naming::HuggingFace
                 : Naming::Reference;
  return s;
}

void load_initial_weights(const WeightsSource& source, const ParamLayout& layout, float* params) {
  if (!source.checkpoint.empty()) {
    load_checkpoint_weights(source.checkpoint, layout, params);
    return;
  }
  load_weights(SafetensorsReader(source.file), layout, params, "", source.naming);
}

void export_hugging_face(const std::string& checkpoint, const std::string& out_dir, DType dtype) {
  const std::string ckpt = resolve_checkpoint(checkpoint);
  const ExperimentConfig cfg = checkpoint_experiment_config(ckpt);
  const ParamLayout layout(cfg.model);
  std::vector<float> params(layout.total());
  load_checkpoint_weights(ckpt, layout, params.data());

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  if (ec) throw_error("export error: cannot create ", out_dir, " (", ec.message(), ")");
  const fs::path out(out_dir);
  std::vector<TensorView> views = weight_views(layout, params.data(), "", Naming::HuggingFace);
  std::vector<uint16_t> bf16;
  if (dtype == DType::BF16) {
    bf16 = to_bf16(params.data(), int64_t(params.size()));
    for (TensorView& v : views) {
      v.dtype = DType::BF16;
      v.data = bf16.data() + (static_cast<const float*>(v.data) - params.data());
    }
  }
  write_safetensors((out / kWeightsFile).string(), views, {{"format", "pt"}});
  const std::string& spec = cfg.data.tokenizer;
  const int eos = spec.empty() ? cfg.model.vocab_size - 1 : load_tokenizer(spec)->eot_id();
  write_text(out / kConfigFile, hugging_face_config(cfg.model, eos, dtype).dump(2) + "\n");
  export_tokenizer(cfg.data.tokenizer, out);
}

}  // namespace mamba
