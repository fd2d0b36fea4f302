#include "train/weights_io.h"

#include "util/error.h"

namespace mamba {

std::string tensor_name(const std::string& reference_name, Naming naming) {
  if (naming == Naming::HuggingFace && reference_name == "backbone.embedding.weight") {
    return "backbone.embeddings.weight";
  }
  return reference_name;
}

std::vector<TensorView> weight_views(const ParamLayout& layout, const float* buffer,
                                     const std::string& prefix, Naming naming) {
  std::vector<TensorView> views;
  for (const ParamTensor& t : layout.tensors()) {
    views.push_back({prefix + tensor_name(t.name, naming), DType::F32, t.shape, buffer + t.offset});
  }
  return views;
}

void load_weights(const SafetensorsReader& file, const ParamLayout& layout, float* buffer,
                  const std::string& prefix, Naming naming) {
  for (const ParamTensor& t : layout.tensors()) {
    const std::string name = prefix + tensor_name(t.name, naming);
    if (!file.has(name)) {
      throw_error("weights error: ", file.path(), " has no tensor ", name,
                  ": it was not written for a model of shape ", layout.config().describe());
    }
    // read_f32 checks the stored shape against the layout's and names both on a mismatch.
    const std::vector<float> values = file.read_f32(name, t.shape);
    std::copy(values.begin(), values.end(), buffer + t.offset);
  }
}

}  // namespace mamba
