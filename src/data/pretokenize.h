// Regexes for pre-tokenizers: a pattern splits text into pieces (for GPT-2: words with their
// leading space, numbers, punctuation runs, whitespace) and BPE then runs on each piece alone.
// PCRE2 supplies the Unicode letter/number/space classes, so this code never classifies characters
// itself.
#pragma once
#include <cstddef>
#include <cstdint>
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

// Long text is cut into segments that encode independently, so one huge document spreads over
// threads and never has to be pre-tokenized whole. A cut at `i` (between text[i-1] and text[i]) is
// safe when the pieces of the whole text are exactly the pieces of text[0, i) followed by those of
// text[i, end): see is_safe_cut in pretokenize.cpp for which cuts are.
//
// The end of the first segment of `text`: all of it when at most `target` bytes; else the first
// safe cut in [target, max_bytes); else all of it when at most `max_bytes`; else the last safe cut
// before `target`; else, only for a run of more than `max_bytes` letters, digits or punctuation
// with no safe cut in it, `max_bytes` (moved back to a UTF-8 character boundary). That last kind
// of cut is the only one after which the ids can differ from encoding the text whole.
size_t first_segment_end(std::string_view text, size_t target, size_t max_bytes);

// `text` cut into consecutive segments by first_segment_end.
std::vector<std::string_view> split_into_segments(std::string_view text, size_t target,
                                                  size_t max_bytes = SIZE_MAX);

}  // namespace mamba
