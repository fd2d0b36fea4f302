// Byte-pair encoding as Hugging Face's BPE model defines it: a word (one pre-tokenized piece)
// starts as its characters, each looked up in the vocab, and adjacent tokens are merged, lowest
// merge rank first, until no learned merge applies. GPT-2's files and tokenizer.json both describe
// this model; byte-level vocabularies write every byte as one printable character (below).
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
void append_byte_level(std::string_view bytes, std::string& out);

// The model options of tokenizer.json (all off for GPT-2's files).
struct BpeOptions {
  std::string unk_token;       // "" = none: a character without a token is dropped, as HF does
  bool fuse_unk = false;       // consecutive unknown characters give one unk_token
  bool byte_fallback = false;  // an unknown character becomes its UTF-8 bytes as <0xXX> tokens
  bool ignore_merges = false;  // a word that is itself a token skips the merges
  std::string continuing_subword_prefix;  // before every character of a word but the first
  std::string end_of_word_suffix;         // after the last character of a word
};

class BytePairEncoder {
 public:
  // tokens: id -> token text as the vocab writes it ("" marks an unused id); merges: pairs of
  // tokens in rank order. `source` names the file(s) in error messages.
  BytePairEncoder(const std::vector<std::string>& tokens,
                  const std::vector<std::pair<std::string, std::string>>& merges,
                  const BpeOptions& options, const std::string& source);

  // Appends the ids of one word. Thread-safe; each thread keeps its own cache.
  void encode(std::string_view word, std::vector<int32_t>& out) const;

  // The id of a token given as the vocab writes it, or -1.
  int32_t find(std::string_view token) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  // An open-addressing table of pair -> merge: one cache miss per lookup, where a node-based map
  // takes two; long vocabularies (Gemma-3's 515k merges) spend most of their encoding time here.
  struct MergeSlot {
    uint64_t pair;  // left id << 32 | right id; kNoPair when empty
    Merge merge;
  };
  const Merge* find_merge(uint64_t pair) const;
  void encode_part(std::string_view word, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;
  void merge(std::vector<int32_t>& ids) const;

  BpeOptions options_;
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_fallback_ids_;      // <0xXX>, or -1
  std::array<int32_t, 128> ascii_ids_;              // one-character ASCII tokens, or -1
  std::unordered_map<uint32_t, int32_t> char_ids_;  // one-character tokens by code point
  std::unordered_map<std::string, int32_t> ids_;
  std::vector<MergeSlot> merges_;      // size a power of two, at most half full
  std::vector<uint64_t> token_pairs_;  // sorted code point pairs: first << 32 | second
  uint64_t instance_;                  // tells thread-local caches apart
};

}  // namespace mamba
