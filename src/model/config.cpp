#include "model/config.h"

#include <sstream>

#include "util/error.h"

namespace mamba {

// The upper limits are far above any published Mamba and keep every size product of the model
// (vocab x width, tokens x width x state) well inside 64-bit arithmetic.
void ModelConfig::validate() const {
  auto within = [](const char* key, int value, int lo, int hi) {
    if (value < lo || value > hi) {
      throw_error("model.", key, " = ", value, ": expected an integer from ", lo, " to ", hi);
    }
  };
  within("d_model", d_model, 1, 1 << 16);
  within("n_layer", n_layer, 1, 1 << 12);
  within("vocab_size", vocab_size, 1, 1 << 24);
  within("pad_vocab_multiple", pad_vocab_multiple, 1, 1 << 16);
  within("d_state", d_state, 1, 1 << 10);
  within("d_conv", d_conv, 1, 1 << 6);
  within("expand", expand, 1, 1 << 4);
  if (dt_rank != 0) within("dt_rank", dt_rank, 1, d_inner());
  if (!(norm_eps > 0.0f && norm_eps <= 0.1f)) {
    throw_error("model.norm_eps = ", norm_eps, ": expected a number in (0, 0.1]");
  }
}

std::string ModelConfig::describe() const {
  std::ostringstream os;
  os << "d_model=" << d_model << " n_layer=" << n_layer << " vocab_size=" << vocab_size
     << " (padded " << padded_vocab() << ") d_state=" << d_state << " d_conv=" << d_conv
     << " expand=" << expand << " dt_rank=" << rank();
  return os.str();
}

}  // namespace mamba
