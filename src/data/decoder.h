// The decoder of a tokenizer.json: steps that turn token strings back into text. Supported, with
// Hugging Face's meaning: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and Sequence.
// The result is bytes: where Hugging Face would put U+FFFD for bytes that are not UTF-8 (a token
// sequence cut mid-character), the bytes themselves are kept.
#pragma once
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "data/pretokenize.h"

namespace mamba {

class Decoder {
 public:
  Decoder() = default;  // tokens are joined as they are
  // `j` is the file's "decoder" value (null: none, or byte-level when the vocab is). Throws
  // mamba::Error naming `path` for types it does not support.
  static Decoder from_json(const nlohmann::json& j, const std::string& path, bool byte_level);
  static Decoder byte_level();

  // `whole`: the tokens are a whole text, so the rules for its start apply (Strip, Metaspace's
  // removal of the space it prepended); without it, the bytes a token adds inside a text.
  std::string decode(std::vector<std::string> tokens, bool whole) const;

 private:
  enum class Kind { kByteLevel, kMetaspace, kByteFallback, kFuse, kStrip, kReplace };
  struct Step {
    Kind kind = Kind::kFuse;
    std::string text;     // Metaspace: replacement; Strip: content; Replace: what is inserted
    bool prepend = true;  // Metaspace: a space was prepended (prepend_scheme is not never)
    size_t start = 0, stop = 0;            // Strip
    std::shared_ptr<const Regex> pattern;  // Replace
  };
  std::vector<Step> steps_;
};

}  // namespace mamba
