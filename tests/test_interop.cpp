// Hugging Face interop: `mamba export` writes a folder under transformers' names and config
// fields, and model.init_from starts a run from such a folder, a checkpoint or a safetensors
// file. (On the GPU machine, scripts/gpu/check_export.py loads the folder in transformers.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "io/safetensors.h"
#include "run_fixture.h"
#include "train/checkpoint.h"
#include "train/hugging_face.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;

class Interop : public test::RunFixture {
 protected:
  // A trained checkpoint (8 steps) of the fixture's model.
  static std::string trained(const std::string& name) {
    EXPECT_EQ(run_mamba("train " + config(name) + " data.tokenizer=byte").status, 0);
    return dir(name) + "/step_00000008";
  }
};

TEST_F(Interop, ExportWritesHuggingFaceNamesAndConfig) {
  const std::string ckpt = trained("export");
  const std::string out = dir("export") + "/hf";
  const auto r = run_mamba("export " + ckpt + " " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  const auto config = nlohmann::json::parse(bytes_of(out + "/config.json"));
  EXPECT_EQ(config["model_type"], "mamba");
  EXPECT_EQ(config["architectures"][0], "MambaForCausalLM");
  EXPECT_EQ(config["hidden_size"], 16);
  EXPECT_EQ(config["num_hidden_layers"], 2);
  EXPECT_EQ(config["state_size"], 4);
  EXPECT_EQ(config["vocab_size"], 264);  // 257 padded to a multiple of 8: the embedding's rows
  EXPECT_EQ(config["time_step_rank"], 1);
  EXPECT_EQ(config["conv_kernel"], 4);
  EXPECT_EQ(config["eos_token_id"], 256);

  const SafetensorsReader ours(ckpt + "/model.safetensors"), theirs(out + "/model.safetensors");
  EXPECT_TRUE(theirs.has("backbone.embeddings.weight"));
  EXPECT_FALSE(theirs.has("backbone.embedding.weight"));
  ASSERT_EQ(ours.names().size(), theirs.names().size());
  for (const std::string& name : ours.names()) {
    const std::string hf = tensor_name(name, Naming::HuggingFace);
    EXPECT_EQ(ours.read_f32(name), theirs.read_f32(hf)) << name;
    EXPECT_EQ(ours.info(name).shape, theirs.info(hf).shape) << name;
  }

  ASSERT_EQ(run_mamba("export " + ckpt + " " + out + "_bf16 --dtype bf16").status, 0);
  const SafetensorsReader half(out + "_bf16/model.safetensors");
  const std::vector<float> w = ours.read_f32("backbone.layers.0.mixer.in_proj.weight");
  const std::vector<uint16_t> rounded = to_bf16(w.data(), int64_t(w.size()));
  const std::vector<float> h = half.read_f32("backbone.layers.0.mixer.in_proj.weight");
  EXPECT_EQ(half.info("backbone.layers.0.mixer.in_proj.weight").dtype, DType::BF16);
  for (size_t i = 0; i < w.size(); ++i) {
    uint32_t bits = uint32_t(rounded[i]) << 16;
    float expected = 0;
    std::memcpy(&expected, &bits, sizeof expected);
    ASSERT_EQ(h[i], expected) << i;
    ASSERT_LE(std::fabs(h[i] - w[i]), std::fabs(w[i]) / 256) << i;
  }
}

// Exported, then imported: the weights are the same bits.
TEST_F(Interop, ExportedWeightsImportByteIdentical) {
  const std::string ckpt = trained("roundtrip");
  const std::string out = dir("roundtrip") + "/hf";
  ASSERT_EQ(run_mamba("export " + ckpt + " " + out).status, 0);
  const ParamLayout layout(checkpoint_model_config(ckpt));
  std::vector<float> original(layout.total()), imported(layout.total()), bare(layout.total());
  load_checkpoint_weights(ckpt, layout, original.data());
  const WeightsSource folder = find_weights(out);
  ASSERT_TRUE(folder.model.has_value());
  EXPECT_EQ(folder.model->padded_vocab(), layout.config().padded_vocab());
  EXPECT_EQ(folder.naming, Naming::HuggingFace);
  load_initial_weights(folder, layout, imported.data());
  EXPECT_EQ(original, imported);
  // A bare safetensors file under the reference names.
  load_initial_weights(find_weights(ckpt + "/model.safetensors"), layout, bare.data());
  EXPECT_EQ(original, bare);
}

// A run that starts from an exported folder starts where the checkpoint ended: its validation
// loss before the first step is the checkpoint's.
TEST_F(Interop, InitFromHuggingFaceFolderStartsFromItsWeights) {
  const std::string ckpt = trained("source");
  const std::string out = dir("source") + "/hf";
  ASSERT_EQ(run_mamba("export " + ckpt + " " + out).status, 0);
  const auto e = run_mamba("eval " + ckpt);
  ASSERT_EQ(e.status, 0) << e.output;
  const double expected = nlohmann::json::parse(e.output)["val_loss"].get<double>();

  // No model section: it comes from the folder's config.json.
  const std::string cfg = config("init");
  std::string text = bytes_of(cfg);
  text.erase(0, text.find('\n') + 1);
  std::ofstream(cfg) << text;
  const auto r = run_mamba("train " + cfg + " model.init_from=" + out + " train.steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("initialised from the weights of " + out), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("d_model=16 n_layer=2"), std::string::npos) << r.output;
  const std::vector<double> val_losses = metric("init", "val_loss");
  ASSERT_FALSE(val_losses.empty());
  EXPECT_DOUBLE_EQ(val_losses.front(), expected);
  // A fresh optimizer: the first update is AdamW's first.
  const SafetensorsReader opt(dir("init") + "/step_00000002/optimizer.safetensors");
  EXPECT_EQ(opt.metadata().at("steps_taken"), "2");
}

TEST_F(Interop, InitFromDisagreeingModelIsAnError) {
  const std::string ckpt = trained("disagree");
  const auto r =
      run_mamba("train " + config("other") + " model.init_from=" + ckpt + " model.d_model=32");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("model.d_model = 32"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("d_model = 16"), std::string::npos) << r.output;
  const auto missing = run_mamba("train " + config("missing") + " model.init_from=/nonexistent");
  EXPECT_EQ(missing.status, 2) << missing.output;
  EXPECT_NE(missing.output.find("model.init_from = /nonexistent does not exist"), std::string::npos)
      << missing.output;
}

}  // namespace
}  // namespace mamba
