// Shape of a Mamba-1 language model (design.md §1). Derived sizes are functions, not stored copies.
#pragma once
#include <cstdint>
#include <string>

namespace mamba {

struct ModelConfig {
  int d_model = 64;
  int n_layer = 2;
  int vocab_size = 256;  // tokenizer vocab; the embedding is padded up to pad_multiple
  int pad_vocab_multiple = 8;
  int d_state = 16;
  int d_conv = 4;
  int expand = 2;
  int dt_rank = 0;  // 0 means auto: ceil(d_model / 16)
  float norm_eps = 1e-5f;

  int d_inner() const { return expand * d_model; }
  int rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  int padded_vocab() const {
    return (vocab_size + pad_vocab_multiple - 1) / pad_vocab_multiple * pad_vocab_multiple;
  }
  int xproj_dim() const { return rank() + 2 * d_state; }

  // Throws mamba::Error naming the first field that is out of range.
  void validate() const;
  // "d_model=64 n_layer=2 ..." for logs and mismatch messages.
  std::string describe() const;
};

}  // namespace mamba
