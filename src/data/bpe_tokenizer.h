// The BPE tokenizer behind both GPT-2's files and Hugging Face's tokenizer.json, as Hugging Face
// runs it: added tokens are cut out first; each stretch between them is normalized, (added tokens
// matched in normalized text are cut out), pre-tokenized into words, and each word BPE-encoded.
// The loaders (tokenizer_gpt2.cpp, tokenizer_hf.cpp) only translate file formats into BpeParts.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/added_tokens.h"
#include "data/bpe.h"
#include "data/decoder.h"
#include "data/normalizer.h"
#include "data/pre_tokenizer.h"
#include "data/tokenizer.h"

namespace mamba {

struct BpeParts {
  std::string name, sha256, source;  // source: the file(s), for error messages
  std::vector<std::string> tokens;   // id -> token as the vocab writes it; "" for unused ids
  std::vector<std::pair<std::string, std::string>> merges;  // rank order
  BpeOptions options;
  std::vector<AddedToken> added;
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Decoder decoder;
  int32_t eot_id = -1;
  int32_t bos_id = -1;
  bool encodes_segments = true;
};

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeParts parts);
  void encode(std::string_view text, std::vector<int32_t>& ids) const override;
  std::string token_bytes(int32_t id) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  int32_t token_id(std::string_view token) const override;

 private:
  void encode_section(std::string_view text, bool first, std::vector<int32_t>& ids) const;
  void encode_normalized(std::string_view text, bool first, std::vector<int32_t>& ids) const;

  BpeParts parts_;
  std::vector<std::string> token_text_;  // id -> token string for the decoder
  std::vector<std::string> id_to_bytes_;
  AddedTokenMatcher raw_added_, normalized_added_;
  BytePairEncoder bpe_;
};

// Vocab size for a model: one past the largest id of the vocab and the added tokens.
int bpe_vocab_size(const BpeParts& parts);

}  // namespace mamba
