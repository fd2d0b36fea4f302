// The pre-tokenizer of a tokenizer.json: steps that cut normalized text into words, each step
// applied to every piece the previous one made; the BPE model then encodes each word alone.
// Supported, with Hugging Face's meaning: ByteLevel, Split, Metaspace, Digits, Punctuation,
// Whitespace, WhitespaceSplit and Sequence.
#pragma once
#include <functional>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "data/pretokenize.h"

namespace mamba {

// How a Split keeps what its pattern matches; for "the-final--countdown" split on "-":
//   Removed: the final countdown           Isolated: the - final - - countdown
//   MergedWithPrevious: the- final- - countdown
//   MergedWithNext: the -final - -countdown   Contiguous: the - final -- countdown
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Receives pieces of text one at a time; the view is valid during the call only.
using PieceSink = std::function<void(std::string_view)>;

// Cuts `text` at the spans' bounds (matches have match set) as `behavior` says and passes on the
// pieces.
void split_spans(std::string_view text, const std::vector<Regex::Span>& spans,
                 SplitBehavior behavior, const PieceSink& out);

class PreTokenizer {
 public:
  PreTokenizer() = default;  // the whole text is one word
  // `j` is the file's "pre_tokenizer" value (null: none). Throws mamba::Error naming `path` for
  // types and settings it does not support.
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& path);
  // GPT-2's: its regex, then the byte-level alphabet.
  static PreTokenizer byte_level();

  // Passes on the non-empty words of `text` (valid UTF-8) in order. `first`: the text starts the
  // input, for Metaspace's prepend_scheme "first". Thread-safe.
  void apply(std::string_view text, bool first, const PieceSink& word) const;
  std::vector<std::string> words(std::string_view text, bool first) const;

  // Whether a ByteLevel step turns the words into the byte-level alphabet.
  bool byte_level_alphabet() const;

  // True when a text cut where split_into_segments cuts gives the same words as the text whole:
  // GPT-2's regex in a ByteLevel step without a prefix space.
  bool breaks_after_newlines() const;

 private:
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  enum class Prepend { kAlways, kFirst, kNever };
  struct Step {
    Kind kind;
    std::shared_ptr<const Regex> regex;  // Split's pattern; ByteLevel's when use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool prefix_space = false;  // ByteLevel add_prefix_space
    std::string replacement;    // Metaspace
    Prepend prepend = Prepend::kAlways;
    bool split = true;         // Metaspace: cut before each replacement character
    std::string pattern_text;  // Split: the pattern as written, for breaks_after_newlines
  };
  void apply_step(const Step& step, std::string_view piece, bool first, const PieceSink& out) const;

  std::vector<Step> steps_;
};

}  // namespace mamba
