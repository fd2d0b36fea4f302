#include "data/bpe_tokenizer.h"

#include <algorithm>

#include "data/text.h"
#include "data/unicode_nfc.h"
#include "util/error.h"

namespace mamba {

int bpe_vocab_size(const BpeModel& model) {
  int size = int(model.tokens.size());
  for (const AddedToken& t : model.added) size = std::max(size, t.id + 1);
  return size;
}

BpeTokenizer::BpeTokenizer(BpeModel model)
    : Tokenizer(model.name, model.sha256, bpe_vocab_size(model), model.eot_id),
      model_(std::move(model)),
      bpe_(model_.tokens, model_.merges, model_.source) {
  id_to_bytes_ = model_.tokens;
  id_to_bytes_.resize(vocab_size());
  for (const AddedToken& t : model_.added) {
    id_to_bytes_[t.id] = t.content;
    if (!t.special && !t.content.empty()) matched_.push_back(&t);
  }
  // Longest first, so that at one position the longest added token wins (as Hugging Face does).
  std::stable_sort(matched_.begin(), matched_.end(), [](const AddedToken* a, const AddedToken* b) {
    return a->content.size() > b->content.size();
  });
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return id_to_bytes_[id];
}

void BpeTokenizer::encode(std::string_view text, std::vector<int32_t>& ids) const {
  std::string clean;
  sanitize_utf8(text, clean);
  if (model_.nfc) clean = nfc_normalize(clean);
  if (matched_.empty()) {
    encode_segment(clean, ids);
    return;
  }
  // Cut out the leftmost (then longest) added token again and again. next[k] caches where token
  // k next occurs, so the text is scanned once per token rather than once per match.
  const std::string_view all(clean);
  std::vector<size_t> next(matched_.size());
  for (size_t k = 0; k < matched_.size(); ++k) next[k] = all.find(matched_[k]->content);
  size_t start = 0;
  while (true) {
    size_t best = std::string_view::npos, best_k = 0;
    for (size_t k = 0; k < matched_.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < start) {
        next[k] = all.find(matched_[k]->content, start);
      }
      if (next[k] < best) best = next[k], best_k = k;
    }
    if (best == std::string_view::npos) break;
    encode_segment(all.substr(start, best - start), ids);
    ids.push_back(matched_[best_k]->id);
    start = best + matched_[best_k]->content.size();
  }
  encode_segment(all.substr(start), ids);
}

void BpeTokenizer::encode_segment(std::string_view text, std::vector<int32_t>& ids) const {
  if (text.empty()) return;
  std::string prefixed;
  if (model_.add_prefix_space && text[0] != ' ') {
    prefixed = " " + std::string(text);
    text = prefixed;
  }
  std::vector<std::string_view> pieces;
  pretokenizer_.split(text, pieces);
  for (std::string_view piece : pieces) {
    if (model_.ignore_merges) {
      const int32_t whole = bpe_.find(piece);
      if (whole >= 0) {
        ids.push_back(whole);
        continue;
      }
    }
    bpe_.encode(piece, ids);
  }
}

}  // namespace mamba
