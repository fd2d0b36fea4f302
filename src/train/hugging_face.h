// Hugging Face interop. Out: a checkpoint as a folder that transformers'
// MambaForCausalLM.from_pretrained loads unchanged (config.json, model.safetensors under Hugging
// Face's names, the tokenizer files). In: the weights a run starts from (model.init_from): such a
// folder, a checkpoint of ours, or a bare safetensors file under either naming.
#pragma once
#include <optional>
#include <string>

#include "io/safetensors.h"
#include "model/config.h"
#include "model/params.h"
#include "train/weights_io.h"

namespace mamba {

struct WeightsSource {
  std::string path;        // what was given
  std::string checkpoint;  // set when it is a checkpoint of ours (loaded verified)
  std::string file;        // the safetensors file otherwise
  Naming naming = Naming::Reference;
  std::optional<ModelConfig> model;  // from config.json or our metadata; none for a bare file
};

// Throws mamba::Error naming the path when it is none of the three kinds.
WeightsSource find_weights(const std::string& path);

// Fills params (this layout) from the source; a tensor missing or of another shape is an error
// naming it.
void load_initial_weights(const WeightsSource& source, const ParamLayout& layout, float* params);

// Writes OUT_DIR/config.json, model.safetensors (F32 or BF16) and the tokenizer files that the
// checkpoint's data.tokenizer names. Files are written atomically.
void export_hugging_face(const std::string& checkpoint, const std::string& out_dir, DType dtype);

}  // namespace mamba
