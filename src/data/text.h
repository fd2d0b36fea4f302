// Reading input, making text safe for the Unicode-aware tokenizers, and the UTF-8 encoding they
// share.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mamba {

// The whole file as bytes. Throws mamba::Error naming the file and the OS reason.
std::string read_file(const std::string& path);

// Everything left in `f`. Callers check std::ferror(f) and word the error for their own source.
std::string read_stream(std::FILE* f);

// `cp` must be at most U+10FFFF: callers pass code points they decoded or looked up, never input.
void append_utf8(uint32_t cp, std::string& out);

// Valid UTF-8 is copied unchanged; each invalid sequence (a bad byte and the continuation bytes
// after it) becomes U+FFFD, so the Unicode-aware tokenizers see text as Python's errors="replace"
// or Hugging Face's tokenizers (which only accept valid strings) would.
// Returns the number of replacements so callers can report them.
size_t sanitize_utf8(std::string_view in, std::string& out);

}  // namespace mamba
