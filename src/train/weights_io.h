// Model weights <-> safetensors, under the reference names (mamba_ssm's state_dict, so a
// checkpoint loads as it is in PyTorch) or Hugging Face's (transformers' MambaForCausalLM, which
// differs only in backbone.embeddings.weight). lm_head.weight is tied to the embedding and
// omitted.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/params.h"

namespace mamba {

enum class Naming { Reference, HuggingFace };

// The name of a parameter (its reference name) under a naming.
std::string tensor_name(const std::string& reference_name, Naming naming);

// Views of every tensor of a buffer with this layout, named prefix + name.
std::vector<TensorView> weight_views(const ParamLayout& layout, const float* buffer,
                                     const std::string& prefix = "",
                                     Naming naming = Naming::Reference);

// Fills buffer from the tensors named prefix + name. Every parameter must be present with its
// exact shape; the error names the file, the tensor and both shapes.
void load_weights(const SafetensorsReader& file, const ParamLayout& layout, float* buffer,
                  const std::string& prefix = "", Naming naming = Naming::Reference);

}  // namespace mamba
