#include "data/bpe_tokenizer.h"

#include <algorithm>

#include "data/text.h"
#include "util/error.h"

namespace mamba {

int bpe_vocab_size(const BpeParts& parts) {
  int size = int(parts.tokens.size());
  for (const AddedToken& t : parts.added) size = std::max(size, t.id + 1);
  return size;
}

BpeTokenizer::BpeTokenizer(BpeParts parts)
    : Tokenizer(parts.name, parts.sha256, bpe_vocab_size(parts), parts.eot_id, parts.bos_id,
                parts.encodes_segments),
      parts_(std::move(parts)),
      bpe_(parts_.tokens, parts_.merges, parts_.options, parts_.source) {
  if (parts_.pre_tokenizer.byte_level_alphabet()) {
    for (int b = 0; b < 256; ++b) {
      if (bpe_.find(to_byte_level(std::string(1, char(b)))) < 0) {
        throw_error("tokenizer error: ", parts_.source, " has no token for byte ", b,
                    ": a byte-level BPE vocab needs all 256 bytes; use the tokenizer's own files");
      }
    }
  }
  token_text_ = parts_.tokens;
  token_text_.resize(vocab_size());
  for (const AddedToken& t : parts_.added) {
    token_text_[t.id] = t.content;
    if (t.special) continue;
    if (t.normalized)
      normalized_added_.add(parts_.normalizer.apply(t.content), t);
    else
      raw_added_.add(t.content, t);
  }
  id_to_bytes_.resize(token_text_.size());
  for (size_t id = 0; id < token_text_.size(); ++id) {
    id_to_bytes_[id] = parts_.decoder.decode({token_text_[id]}, false);
  }
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return id_to_bytes_[id];
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    check_id(id);
    tokens.push_back(token_text_[id]);
  }
  return parts_.decoder.decode(std::move(tokens), true);
}

int32_t BpeTokenizer::token_id(std::string_view token) const {
  for (const AddedToken& t : parts_.added) {
    if (t.content == token) return t.id;
  }
  return bpe_.find(token);
}

void BpeTokenizer::encode(std::string_view text, std::vector<int32_t>& ids) const {
  std::string clean;
  sanitize_utf8(text, clean);
  const std::string_view all(clean);
  size_t start = 0;
  AddedTokenMatcher::Match m;
  while (!raw_added_.empty() && raw_added_.find(all, start, m)) {
    encode_section(all.substr(start, m.begin - start), start == 0, ids);
    ids.push_back(m.id);
    start = m.end;
  }
  encode_section(all.substr(start), start == 0, ids);
}

void BpeTokenizer::encode_section(std::string_view text, bool first,
                                  std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  if (parts_.normalizer.empty() && normalized_added_.empty()) {
    encode_normalized(text, first, ids);
    return;
  }
  const std::string normalized = parts_.normalizer.apply(std::string(text));
  const std::string_view all(normalized);
  size_t start = 0;
  AddedTokenMatcher::Match m;
  while (normalized_added_.find(all, start, m)) {
    encode_normalized(all.substr(start, m.begin - start), first && start == 0, ids);
    ids.push_back(m.id);
    start = m.end;
  }
  encode_normalized(all.substr(start), first && start == 0, ids);
}

void BpeTokenizer::encode_normalized(std::string_view text, bool first,
                                     std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  parts_.pre_tokenizer.apply(text, first, [&](std::string_view word) { bpe_.encode(word, ids); });
}

}  // namespace mamba
