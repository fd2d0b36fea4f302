#include "train/weights_io.h"

#include "util/error.h"

namespace mamba {

std::vector<TensorView> weight_views(const ParamLayout& layout, const float* buffer,
                                     const std::string& prefix) {
  std::vector<TensorView> views;
  for (const ParamTensor& t : layout.tensors()) {
    views.push_back({prefix + t.name, DType::F32, t.shape, buffer + t.offset});
  }
  return views;
}

void load_weights(const SafetensorsReader& file, const ParamLayout& layout, float* buffer,
                  const std::string& prefix) {
  for (const ParamTensor& t : layout.tensors()) {
    const std::string name = prefix + t.name;
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
