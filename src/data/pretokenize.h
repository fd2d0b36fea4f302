// GPT-2's pre-tokenizer: a regex splits text into pieces (words with their leading space, numbers,
// punctuation runs, whitespace) and BPE then runs on each piece alone. PCRE2 supplies the Unicode
// letter/number/space classes, so this code never classifies characters itself.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mamba {

// The pattern of GPT-2's encoder.py, also used by Hugging Face's ByteLevel pre-tokenizer.
extern const char* const kGpt2Pattern;

class Pretokenizer {
 public:
  explicit Pretokenizer(const std::string& pattern = kGpt2Pattern);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // Appends the pieces of `text` (valid UTF-8) to `pieces`; they cover the text in order.
  // Thread-safe.
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

 private:
  void* code_;  // pcre2_code_8*, kept opaque so pcre2.h stays out of this header
};

// Cuts text into segments of about `target` bytes that encode independently: the pieces of the
// whole text are exactly the pieces of the segments, one after another. Used to spread one long
// document over threads.
std::vector<std::string_view> split_into_segments(std::string_view text, size_t target);

}  // namespace mamba
