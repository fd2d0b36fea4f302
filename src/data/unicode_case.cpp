#include "data/unicode_case.h"

#include <algorithm>
#include <iterator>

#include "data/text.h"
#include "data/unicode_case_data.h"
#include "data/utf8.h"

namespace mamba {

std::string unicode_lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  const auto& table = case_data::kLower;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      out += char(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
      ++i;
      continue;
    }
    const uint32_t cp = next_code_point(text, i);
    const auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                                     [](const auto& r, uint32_t c) { return r.code_point < c; });
    if (it == std::end(table) || it->code_point != cp) {
      append_utf8(cp, out);
      continue;
    }
    for (uint32_t part : it->lower) {
      if (part) append_utf8(part, out);
    }
  }
  return out;
}

}  // namespace mamba
