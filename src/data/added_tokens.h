// Added tokens (tokenizer.json's "added_tokens" that are not special) are cut out of the text
// before anything else, wherever they occur: at each position the longest one wins, and the
// leftmost occurrence goes first. A byte trie finds them in one pass over the text.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mamba {

struct AddedToken {
  std::string content;
  int32_t id;
  bool special = false;                 // never matched in text: its text is ordinary text
  bool normalized = false;              // matched in the normalized text rather than the input
  bool lstrip = false, rstrip = false;  // takes the whitespace on its left / right with it
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // Matches `content` (the token's text, or its normalized form) as `token`.
  void add(const std::string& content, const AddedToken& token);
  bool empty() const { return nodes_.size() <= 1; }

  struct Match {
    size_t begin, end;  // the bytes the token takes, whitespace included
    int32_t id;
  };
  // The first token in text[from, ...) (valid UTF-8), or false.
  bool find(std::string_view text, size_t from, Match& match) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token = -1;                                       // index into tokens_
  };
  int32_t child(int32_t node, unsigned char byte) const;

  std::vector<Node> nodes_{Node{}};
  std::vector<AddedToken> tokens_;
  std::array<bool, 256> first_byte_{};
};

}  // namespace mamba
