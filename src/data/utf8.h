// Walking valid UTF-8 one code point at a time, for the Unicode tables and the tokenizer steps
// that work per character. Input must be valid UTF-8 (sanitize_utf8 makes it so).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mamba {

// The length in bytes of the code point whose first byte is `lead`.
inline size_t utf8_length(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Decodes the code point at s[i] and moves i past it.
inline uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto b = [&](size_t k) { return uint32_t(static_cast<unsigned char>(s[i + k])); };
  uint32_t cp;
  const size_t n = utf8_length(static_cast<unsigned char>(s[i]));
  if (n == 1)
    cp = b(0);
  else if (n == 2)
    cp = (b(0) & 0x1F) << 6 | (b(1) & 0x3F);
  else if (n == 3)
    cp = (b(0) & 0x0F) << 12 | (b(1) & 0x3F) << 6 | (b(2) & 0x3F);
  else
    cp = (b(0) & 0x07) << 18 | (b(1) & 0x3F) << 12 | (b(2) & 0x3F) << 6 | (b(3) & 0x3F);
  i += n;
  return cp;
}

// Unicode White_Space, which Rust's char::is_whitespace (and so Hugging Face's Strip) uses.
inline bool is_unicode_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

}  // namespace mamba
