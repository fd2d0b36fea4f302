#include "data/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <new>

#include "data/utf8.h"
#include "util/error.h"

namespace mamba {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

pcre2_code* as_code(void* code) {
  return static_cast<pcre2_code*>(code);
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof buffer);
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

Regex::Regex(const std::string& pattern, bool literal, const std::string& source) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   options, &error, &offset, nullptr);
  if (!code) {
    throw_error("tokenizer error: cannot compile ", source, " '", pattern, "' at offset ", offset,
                ": ", pcre2_message(error), ": fix the pattern");
  }
  // JIT makes matching several times faster; without it (an unusual PCRE2 build) the
  // interpreter gives the same pieces, so a failure here is not an error.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = code;
}

Regex::~Regex() {
  pcre2_code_free(as_code(code_));
}

void Regex::spans(std::string_view text, std::vector<Span>& spans) const {
  spans.clear();
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(as_code(code_), nullptr);
  if (!match) throw std::bad_alloc();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0, covered = 0;
  int rc = 0;
  while (start < text.size()) {
    // The caller guarantees valid UTF-8; skipping PCRE2's check matters because it would
    // otherwise re-scan the rest of the subject on every call, making the loop quadratic.
    rc = pcre2_match(as_code(code_), subject, text.size(), start, PCRE2_NO_UTF_CHECK, match,
                     nullptr);
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    if (ovector[1] == ovector[0]) {
      // An empty match is no piece; look again from the next character.
      if (ovector[0] >= text.size()) break;
      start = ovector[0] + utf8_length(static_cast<unsigned char>(text[ovector[0]]));
      continue;
    }
    if (ovector[0] > covered) spans.push_back({covered, ovector[0], false});
    spans.push_back({ovector[0], ovector[1], true});
    start = covered = ovector[1];
  }
  pcre2_match_data_free(match);
  if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
    throw_error("tokenizer error: pre-tokenizer regex failed: ", pcre2_message(rc));
  }
  // Text the pattern does not cover stays one piece, so nothing is ever dropped.
  if (covered < text.size()) spans.push_back({covered, text.size(), false});
}

void Regex::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  std::vector<Span> found;
  spans(text, found);
  for (const Span& s : found) pieces.push_back(text.substr(s.begin, s.end - s.begin));
}

namespace {

enum class CharClass { space, letter, digit, other };

CharClass ascii_class(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::letter;
  if (c >= '0' && c <= '9') return CharClass::digit;
  if (c > ' ' && c < 127) return CharClass::other;
  return CharClass::space;  // whitespace, control characters and non-ASCII bytes: never cut here
}

// Two kinds of cut are piece boundaries of the GPT-2 pattern whatever surrounds them; matching
// after a cut never looks back (the pattern has no lookbehind), so the pieces after it are those
// of the text from the cut on, and the pieces before it end exactly at it in both texts.
// - Right after the '\n' of "X\nY", X and Y printable ASCII: no alternative joins X with the
//   '\n' (only " ?" prefixes reach into a word, and only a space), the lone '\n' is a piece of its
//   own with and without Y after it.
// - Between printable ASCII a and b of different classes (letter, digit, other), a not '\'':
//   the piece holding a is a run of a's class (or a contraction ending in a letter), which stops
//   before b with or without b there, and the " ?" prefixes only take a space, which b is not.
//   a = '\'' is excluded because "'s" and friends are pieces that start with it.
//   This is what lets long text without whitespace (base64, minified code, tables) be cut.
bool is_safe_cut(std::string_view text, size_t i) {
  if (i == 0 || i >= text.size()) return false;
  const CharClass a = ascii_class(text[i - 1]), b = ascii_class(text[i]);
  if (text[i - 1] == '\n')
    return i >= 2 && ascii_class(text[i - 2]) != CharClass::space && b != CharClass::space;
  return a != CharClass::space && b != CharClass::space && a != b && text[i - 1] != '\'';
}

}  // namespace

size_t first_segment_end(std::string_view text, size_t target, size_t max_bytes) {
  target = std::max<size_t>(target, 1);
  max_bytes = std::max(max_bytes, target);
  if (text.size() <= target) return text.size();
  const size_t limit = std::min(text.size(), max_bytes);
  for (size_t i = target; i < limit; ++i) {
    if (is_safe_cut(text, i)) return i;
  }
  if (text.size() <= max_bytes) return text.size();
  for (size_t i = target; i-- > 1;) {
    if (is_safe_cut(text, i)) return i;
  }
  size_t cut = max_bytes;
  while (cut > 1 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return cut;
}

std::vector<std::string_view> split_into_segments(std::string_view text, size_t target,
                                                  size_t max_bytes) {
  std::vector<std::string_view> segments;
  do {
    const size_t end = first_segment_end(text, target, max_bytes);
    segments.push_back(text.substr(0, end));
    text.remove_prefix(end);
  } while (!text.empty());
  return segments;
}

}  // namespace mamba
