// Unicode lowercasing one code point at a time (full mappings, no context: U+0130 becomes
// "i\u0307", U+03A3 always U+03C3), as Hugging Face's Lowercase normalizer does. The table comes
// from Python's str.lower() via unicode_case_gen.py.
#pragma once
#include <string>
#include <string_view>

namespace mamba {

// `text` must be valid UTF-8.
std::string unicode_lowercase(std::string_view text);

}  // namespace mamba
