// Regexes for pre-tokenizers: a pattern splits text into pieces (for GPT-2: words with their
// leading space, numbers, punctuation runs, whitespace) and BPE then runs on each piece alone.
// PCRE2 supplies the Unicode letter/number/space classes, so this code never classifies characters
// itself.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mamba {

// The pattern of GPT-2's encoder.py, also used by Hugging Face's ByteLevel pre-tokenizer.
extern const char* const kGpt2Pattern;

class Regex {
 public:
  // `literal`: the pattern is plain text to find, not a regex. Throws mamba::Error naming
  // `source` (the file and key it came from) when the pattern does not compile.
  explicit Regex(const std::string& pattern = kGpt2Pattern, bool literal = false,
                 const std::string& source = "the pre-tokenizer pattern");
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  struct Span {
    size_t begin, end;
    bool match;
  };
  // Replaces `spans` with the non-empty matches of the pattern in `text` (valid UTF-8) and the
  // text between them, in order, covering the text. Thread-safe.
  void spans(std::string_view text, std::vector<Span>& spans) const;

  // Appends the pieces of `text`: the matches and the text between them. Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  void* code_;  // pcre2_code_8*, kept opaque so pcre2.h stays out of this header
};

// Cuts text into segments of about `target` bytes that encode independently: the pieces of the
// whole text are exactly the pieces of the segments, one after another. Used to spread one long
// document over threads.
std::vector<std::string_view> split_into_segments(std::string_view text, size_t target);

}  // namespace mamba
