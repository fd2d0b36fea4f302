#include "data/added_tokens.h"

#include <algorithm>

#include "data/utf8.h"

namespace mamba {

namespace {

bool continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

}  // namespace

int32_t AddedTokenMatcher::child(int32_t node, unsigned char byte) const {
  const auto& c = nodes_[node].children;
  const auto it = std::lower_bound(c.begin(), c.end(), std::make_pair(byte, int32_t(-1)));
  return it != c.end() && it->first == byte ? it->second : -1;
}

void AddedTokenMatcher::add(const std::string& content, const AddedToken& token) {
  if (content.empty()) return;
  int32_t node = 0;
  for (char c : content) {
    const auto byte = static_cast<unsigned char>(c);
    int32_t next = child(node, byte);
    if (next < 0) {
      next = int32_t(nodes_.size());
      nodes_.emplace_back();
      auto& children = nodes_[node].children;
      children.insert(std::lower_bound(children.begin(), children.end(), std::make_pair(byte, -1)),
                      {byte, next});
    }
    node = next;
  }
  // The first definition of a text wins, as in Hugging Face's vocabulary.
  if (nodes_[node].token >= 0) return;
  nodes_[node].token = int32_t(tokens_.size());
  tokens_.push_back(token);
  first_byte_[static_cast<unsigned char>(content[0])] = true;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, Match& match) const {
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])] || continuation(text[pos])) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      // Only whole characters: a token never ends inside a UTF-8 sequence of the text.
      if (nodes_[node].token >= 0 && (i + 1 == text.size() || !continuation(text[i + 1]))) {
        best = nodes_[node].token;
        best_end = i + 1;
      }
    }
    if (best < 0) continue;
    const AddedToken& t = tokens_[best];
    match = {pos, best_end, t.id};
    while (t.lstrip && match.begin > from) {
      size_t begin = match.begin - 1;
      while (begin > from && continuation(text[begin])) --begin;
      size_t i = begin;
      if (!is_unicode_space(next_code_point(text, i))) break;
      match.begin = begin;
    }
    while (t.rstrip && match.end < text.size()) {
      size_t i = match.end;
      if (!is_unicode_space(next_code_point(text, i))) break;
      match.end = i;
    }
    return true;
  }
  return false;
}

}  // namespace mamba
