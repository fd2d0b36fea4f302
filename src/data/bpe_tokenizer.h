// The byte-level BPE tokenizer behind both GPT-2's files and Hugging Face's tokenizer.json: added
// tokens are cut out first, the rest is pre-tokenized by GPT-2's regex and each piece is
// BPE-encoded. The loaders (tokenizer_gpt2.cpp, tokenizer_hf.cpp) only translate file formats
// into a BpeModel.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/bpe.h"
#include "data/pretokenize.h"
#include "data/tokenizer.h"

namespace mamba {

struct AddedToken {
  std::string content;  // raw text, matched literally in the input when not special
  int32_t id;
  bool special;
};

struct BpeModel {
  std::string name, sha256, source;  // source: the file(s), for error messages
  std::vector<std::string> tokens;   // id -> raw bytes; "" for ids only added tokens use
  std::vector<std::pair<std::string, std::string>> merges;  // raw bytes, rank order
  std::vector<AddedToken> added;
  int32_t eot_id = -1;
  bool add_prefix_space = false;  // ByteLevel option: a space before text that lacks one
  bool nfc = false;               // normalize to Unicode NFC first
  bool ignore_merges = false;     // a piece that is itself a token skips the merges
};

class BpeTokenizer : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeModel model);
  void encode(std::string_view text, std::vector<int32_t>& ids) const override;
  std::string token_bytes(int32_t id) const override;

 private:
  void encode_segment(std::string_view text, std::vector<int32_t>& ids) const;

  BpeModel model_;
  std::vector<std::string> id_to_bytes_;
  std::vector<const AddedToken*> matched_;  // non-special added tokens, matched in the text
  BytePairEncoder bpe_;
  Pretokenizer pretokenizer_;
};

// Vocab size for a model: one past the largest id of the vocab and the added tokens.
int bpe_vocab_size(const BpeModel& model);

}  // namespace mamba
