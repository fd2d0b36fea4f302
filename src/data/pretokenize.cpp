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

std::vector<std::string_view> split_into_segments(std::string_view text, size_t target) {
  // A cut right after the '\n' of "X\nY", where X and Y are printable ASCII (not whitespace), is
  // a piece boundary of the GPT-2 pattern whatever surrounds it: no alternative can join X with
  // the '\n' (only " ?" prefixes cross into a word, and only a space), the lone '\n' is a piece of
  // its own both with and without Y after it, and matching after the cut never looks back.
  const auto printable = [](char c) { return c > ' ' && c < 127; };
  target = std::max<size_t>(target, 1);
  std::vector<std::string_view> segments;
  size_t begin = 0;
  while (text.size() - begin > target) {
    size_t cut = std::string_view::npos;
    for (size_t i = begin + target; i + 1 < text.size(); ++i) {
      if (text[i] == '\n' && printable(text[i - 1]) && printable(text[i + 1])) {
        cut = i + 1;
        break;
      }
    }
    if (cut == std::string_view::npos) break;
    segments.push_back(text.substr(begin, cut - begin));
    begin = cut;
  }
  segments.push_back(text.substr(begin));
  return segments;
}

}  // namespace mamba
