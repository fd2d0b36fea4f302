// Model weights <-> safetensors under the reference names, so a checkpoint loads as it is in
// PyTorch / mamba_ssm (state_dict names; lm_head.weight is tied to the embedding and omitted).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/params.h"

namespace mamba {

// Views of every tensor of a buffer with this layout, named prefix + reference name.
std::vector<TensorView> weight_views(const ParamLayout& layout, const float* buffer,
                                     const std::string& prefix = "");

// Fills buffer from the tensors named prefix + reference name. Every parameter must be present
// with its exact shape; the error names the file, the tensor and both shapes.
void load_weights(const SafetensorsReader& file, const ParamLayout& layout, float* buffer,
                  const std::string& prefix = "");

}  // namespace mamba
