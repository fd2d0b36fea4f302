// The normalizer of a tokenizer.json: steps applied in order to each stretch of text between
// added tokens before it is pre-tokenized. Supported: NFC, NFKC, Lowercase, Strip, Prepend,
// Replace and Sequence, with Hugging Face's meaning.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "data/pretokenize.h"

namespace mamba {

class Normalizer {
 public:
  Normalizer() = default;  // changes nothing
  // `j` is the file's "normalizer" value (null: none). Throws mamba::Error naming `path` for
  // types it does not support.
  static Normalizer from_json(const nlohmann::json& j, const std::string& path);

  // `text` must be valid UTF-8; so is the result.
  std::string apply(std::string text) const;

  // True when normalizing two stretches of text apart gives the same as normalizing them joined:
  // only per-character steps (NFC, NFKC, Lowercase), so a text may be cut anywhere between two
  // ASCII characters.
  bool per_character() const;
  bool empty() const { return steps_.empty(); }

 private:
  enum class Kind { kNfc, kNfkc, kLowercase, kStrip, kPrepend, kReplace };
  struct Step {
    Kind kind;
    bool left = false, right = false;  // Strip
    std::string text;                  // Prepend, Replace: what is inserted
    std::shared_ptr<const Regex> pattern;
  };
  std::vector<Step> steps_;
};

}  // namespace mamba
