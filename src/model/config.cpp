#include "model/config.h"

#include <sstream>

#include "util/error.h"

namespace mamba {

void ModelConfig::validate() const {
  auto positive = [](const char* key, int value) {
    if (value <= 0)
      throw_error("model config error: model.", key, " = ", value, ": expected a positive integer");
  };
  positive("d_model", d_model);
  positive("n_layer", n_layer);
  positive("vocab_size", vocab_size);
  positive("pad_vocab_multiple", pad_vocab_multiple);
  positive("d_state", d_state);
  positive("d_conv", d_conv);
  positive("expand", expand);
  if (dt_rank < 0)
    throw_error("model config error: model.dt_rank = ", dt_rank,
                ": expected a positive integer or auto");
  if (!(norm_eps > 0.0f))
    throw_error("model config error: model.norm_eps = ", norm_eps, ": expected a positive number");
}

std::string ModelConfig::describe() const {
  std::ostringstream os;
  os << "d_model=" << d_model << " n_layer=" << n_layer << " vocab_size=" << vocab_size
     << " (padded " << padded_vocab() << ") d_state=" << d_state << " d_conv=" << d_conv
     << " expand=" << expand << " dt_rank=" << rank();
  return os.str();
}

}  // namespace mamba
