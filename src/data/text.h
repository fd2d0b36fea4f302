// Reading input files and making text safe for the Unicode-aware tokenizers.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mamba {

// The whole file as bytes. Throws mamba::Error naming the file and the OS reason.
std::string read_file(const std::string& path);

// Valid UTF-8 is copied unchanged; each invalid sequence (a bad byte and the continuation bytes
// after it) becomes U+FFFD, so the Unicode-aware tokenizers see text as Python's errors="replace"
// or Hugging Face's tokenizers (which only accept valid strings) would.
// Returns the number of replacements so callers can report them.
size_t sanitize_utf8(std::string_view in, std::string& out);

}  // namespace mamba
