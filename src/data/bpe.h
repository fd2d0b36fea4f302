// Byte-level byte-pair encoding: a piece of text starts as its bytes and adjacent tokens are
// merged, lowest merge rank first, until no learned merge applies. GPT-2's files and Hugging Face's
// tokenizer.json both describe this same model; they only store it differently.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mamba {

// GPT-2 stores tokens as printable Unicode strings: byte b maps to one code point, itself for
// printable Latin-1 and 256 + n otherwise. These convert between that form and raw bytes.
// from_byte_level returns false when the string holds a code point outside the mapping.
bool from_byte_level(std::string_view text, std::string& bytes);
std::string to_byte_level(std::string_view bytes);

class BytePairEncoder {
 public:
  // tokens: id -> raw bytes ("" marks an unused id); merges: pairs of raw-byte tokens in rank
  // order. `source` names the file(s) in error messages.
  BytePairEncoder(const std::vector<std::string>& tokens,
                  const std::vector<std::pair<std::string, std::string>>& merges,
                  const std::string& source);

  // Appends the ids of one pre-tokenized piece. Thread-safe; each thread keeps its own cache.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  // The id of a token given as raw bytes, or -1.
  int32_t find(std::string_view bytes) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  void merge_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_ids_;
  std::unordered_map<std::string, int32_t> ids_;
  std::unordered_map<uint64_t, Merge> merges_;  // key: left id << 32 | right id
  uint64_t instance_;                           // tells thread-local caches apart
};

}  // namespace mamba
