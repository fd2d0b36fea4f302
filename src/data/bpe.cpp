#include "data/bpe.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>

#include "data/text.h"
#include "data/utf8.h"
#include "util/error.h"

namespace mamba {

namespace {

// GPT-2's bytes_to_unicode(): printable bytes keep their code point, the rest are shifted to
// 256, 257, ... in byte order, so every token is a printable string.
std::array<uint32_t, 256> make_byte_to_code_point() {
  std::array<uint32_t, 256> table{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    table[b] = printable ? b : next++;
  }
  return table;
}

const std::array<uint32_t, 256>& byte_to_code_point() {
  static const std::array<uint32_t, 256> table = make_byte_to_code_point();
  return table;
}

// The thread's cache of piece -> ids. One per thread (no locks) and tagged with the encoder that
// filled it, since a thread may use several tokenizers.
struct PieceCache {
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<int32_t>> ids;
};
constexpr size_t kMaxCachedPieces = 1 << 18;
constexpr size_t kMaxCachedPieceBytes = 256;  // longer pieces (runs of spaces, ...) rarely repeat
std::atomic<uint64_t> next_instance{1};

constexpr uint64_t kNoPair = ~uint64_t(0);  // ids are below 2^31, so no pair of them is this

// Fibonacci hashing of a pair into a table of `size` (a power of two) slots.
size_t slot_of(uint64_t pair, size_t size) {
  return size_t((pair * 0x9E3779B97F4A7C15ull) >> 32) & (size - 1);
}

}  // namespace

bool from_byte_level(std::string_view text, std::string& bytes) {
  // Every code point of the mapping is below U+0144, so one or two UTF-8 bytes each.
  static const std::unordered_map<uint32_t, char> code_point_to_byte = [] {
    std::unordered_map<uint32_t, char> m;
    for (int b = 0; b < 256; ++b) m[byte_to_code_point()[b]] = char(b);
    return m;
  }();
  bytes.clear();
  for (size_t i = 0; i < text.size();) {
    const auto c0 = static_cast<unsigned char>(text[i]);
    uint32_t cp;
    if (c0 < 0x80) {
      cp = c0;
      i += 1;
    } else if ((c0 & 0xE0) == 0xC0 && i + 1 < text.size()) {
      cp = (c0 & 0x1Fu) << 6 | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    const auto it = code_point_to_byte.find(cp);
    if (it == code_point_to_byte.end()) return false;
    bytes += it->second;
  }
  return true;
}

std::string to_byte_level(std::string_view bytes) {
  std::string out;
  append_byte_level(bytes, out);
  return out;
}

void append_byte_level(std::string_view bytes, std::string& out) {
  for (char c : bytes) append_utf8(byte_to_code_point()[static_cast<unsigned char>(c)], out);
}

BytePairEncoder::BytePairEncoder(const std::vector<std::string>& tokens,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 const BpeOptions& options, const std::string& source)
    : options_(options), instance_(next_instance++) {
  byte_fallback_ids_.fill(-1);
  ascii_ids_.fill(-1);
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& t = tokens[id];
    if (t.empty()) continue;
    ids_.emplace(t, int32_t(id));
    size_t end = 0;
    const uint32_t cp = next_code_point(t, end);
    if (end == t.size()) {
      if (cp < 128)
        ascii_ids_[cp] = int32_t(id);
      else
        char_ids_.emplace(cp, int32_t(id));
    }
  }
  char name[8];
  for (int b = 0; b < 256; ++b) {
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    byte_fallback_ids_[b] = find(name);
  }
  if (!options_.unk_token.empty()) {
    unk_id_ = find(options_.unk_token);
    if (unk_id_ < 0) {
      throw_error("tokenizer error: ", source, " names unk_token '", options_.unk_token,
                  "', which is not in the vocab: the file is corrupt");
    }
  }
  // Pairs of characters that stand side by side in some token (see encode); with affixes a
  // token's text is not the characters of the word, so long words are not cut.
  if (options_.continuing_subword_prefix.empty() && options_.end_of_word_suffix.empty()) {
    for (const std::string& t : tokens) {
      size_t i = 0;
      uint32_t previous = t.empty() ? 0 : next_code_point(t, i);
      while (i < t.size()) {
        const uint32_t cp = next_code_point(t, i);
        token_pairs_.push_back(uint64_t(previous) << 32 | cp);
        previous = cp;
      }
    }
    std::sort(token_pairs_.begin(), token_pairs_.end());
    token_pairs_.erase(std::unique(token_pairs_.begin(), token_pairs_.end()), token_pairs_.end());
  }
  const std::string& prefix = options_.continuing_subword_prefix;
  size_t capacity = 16;
  while (capacity < 2 * merges.size()) capacity *= 2;
  merges_.assign(capacity, MergeSlot{kNoPair, Merge{0, 0}});
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    // With a continuing-subword prefix, "a" + "##b" makes "ab##"-less "ab" (HF's rule).
    const bool prefixed = !prefix.empty() && right.compare(0, prefix.size(), prefix) == 0;
    const int32_t l = find(left), r = find(right),
                  result = find(left + right.substr(prefixed ? prefix.size() : 0));
    if (l < 0 || r < 0 || result < 0) {
      throw_error("tokenizer error: merge ", rank + 1, " ('", left, "' + '", right, "') in ",
                  source,
                  " uses or makes a token missing from the vocab: the files do not belong "
                  "together; use the vocab and merges of one tokenizer");
    }
    // The first (lowest-rank) rule for a pair wins, as in GPT-2's bpe().
    const uint64_t pair = uint64_t(uint32_t(l)) << 32 | uint32_t(r);
    for (size_t i = slot_of(pair, merges_.size());; i = (i + 1) & (merges_.size() - 1)) {
      if (merges_[i].pair == pair) break;
      if (merges_[i].pair == kNoPair) {
        merges_[i] = {pair, Merge{int32_t(rank), result}};
        break;
      }
    }
  }
}

const BytePairEncoder::Merge* BytePairEncoder::find_merge(uint64_t pair) const {
  for (size_t i = slot_of(pair, merges_.size());; i = (i + 1) & (merges_.size() - 1)) {
    if (merges_[i].pair == pair) return &merges_[i].merge;
    if (merges_[i].pair == kNoPair) return nullptr;
  }
}

int32_t BytePairEncoder::find(std::string_view token) const {
  const auto it = ids_.find(std::string(token));
  return it == ids_.end() ? -1 : it->second;
}

void BytePairEncoder::encode(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const int32_t whole = find(word);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  if (word.size() <= kMaxCachedPieceBytes || token_pairs_.empty()) {
    encode_part(word, out);
    return;
  }
  // A long word (Llama-2 and Gemma-3 make one of each line) is cut between two characters that
  // no token holds side by side: no merge can join them, so the parts encode alone to the same
  // ids, and their cache entries serve other words. The character before a cut must be a token,
  // so that fuse_unk has nothing to join across it.
  size_t begin = 0, i = 0;
  uint32_t previous = next_code_point(word, i);
  while (i < word.size()) {
    const size_t at = i;
    const uint32_t cp = next_code_point(word, i);
    const bool known = previous < 128 ? ascii_ids_[previous] >= 0 : char_ids_.count(previous) > 0;
    if (known && !std::binary_search(token_pairs_.begin(), token_pairs_.end(),
                                     uint64_t(previous) << 32 | cp)) {
      encode_part(word.substr(begin, at - begin), out);
      begin = at;
    }
    previous = cp;
  }
  encode_part(word.substr(begin), out);
}

void BytePairEncoder::encode_part(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kMaxCachedPieceBytes) {
    const size_t first = out.size();
    initial_symbols(word, out);
    std::vector<int32_t> ids(out.begin() + first, out.end());
    merge(ids);
    out.resize(first);
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  thread_local PieceCache cache;
  if (cache.owner != instance_ || cache.ids.size() >= kMaxCachedPieces) {
    cache.ids.clear();
    cache.owner = instance_;
  }
  thread_local std::string key;  // reused, so a lookup allocates nothing
  key.assign(word);
  const auto it = cache.ids.find(key);
  if (it != cache.ids.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<int32_t> ids;
  initial_symbols(word, ids);
  merge(ids);
  out.insert(out.end(), ids.begin(), ids.end());
  cache.ids.emplace(key, std::move(ids));
}

void BytePairEncoder::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  const bool affixes =
      !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  std::string key;
  for (size_t i = 0; i < word.size();) {
    const size_t begin = i;
    int32_t id = -1;
    const auto lead = static_cast<unsigned char>(word[i]);
    if (affixes) {
      i += utf8_length(lead);
      key.clear();
      if (begin > 0) key += options_.continuing_subword_prefix;
      key.append(word.substr(begin, i - begin));
      if (i == word.size()) key += options_.end_of_word_suffix;
      id = find(key);
    } else if (lead < 0x80) {
      id = ascii_ids_[lead];
      ++i;
    } else {
      const auto it = char_ids_.find(next_code_point(word, i));
      if (it != char_ids_.end()) id = it->second;
    }
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (size_t k = begin; k < i; ++k) all = all && byte_fallback_ids_[uint8_t(word[k])] >= 0;
      if (all) {
        for (size_t k = begin; k < i; ++k) ids.push_back(byte_fallback_ids_[uint8_t(word[k])]);
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // no token for it at all: Hugging Face drops the character
    if (options_.fuse_unk && !ids.empty() && ids.back() == unk_id_) continue;
    ids.push_back(unk_id_);
  }
}

void BytePairEncoder::merge(std::vector<int32_t>& ids) const {
  // Symbols form a linked list; a min-heap holds candidate merges as rank << 32 | position, so
  // the lowest-rank pair is merged first and equal ranks go left to right, as GPT-2 does. This is
  // O(n log n), which matters for long words (Llama-2 and Gemma-3 encode whole lines as one).
  // A candidate is still good when the pair now at its position has its rank: a rank names one
  // pair. Eight-byte candidates keep the heap of a long word small enough for the caches.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  const int32_t n = int32_t(ids.size());
  if (n < 2) return;
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) symbols[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1};
  // The merge of the pair at `pos`, or nullptr.
  const auto merge_at = [&](int32_t pos) -> const Merge* {
    if (pos < 0 || symbols[pos].id < 0 || symbols[pos].next < 0) return nullptr;
    const uint32_t left = uint32_t(symbols[pos].id),
                   right = uint32_t(symbols[symbols[pos].next].id);
    return find_merge(uint64_t(left) << 32 | right);
  };
  std::vector<uint64_t> heap;
  const auto candidate = [](const Merge* m, int32_t pos) {
    return uint64_t(uint32_t(m->rank)) << 32 | uint32_t(pos);
  };
  for (int32_t i = 0; i + 1 < n; ++i) {
    if (const Merge* m = merge_at(i)) heap.push_back(candidate(m, i));
  }
  std::make_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
  const auto push = [&](int32_t pos) {
    if (const Merge* m = merge_at(pos)) {
      heap.push_back(candidate(m, pos));
      std::push_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    }
  };
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<uint64_t>());
    const uint64_t c = heap.back();
    heap.pop_back();
    const int32_t pos = int32_t(uint32_t(c));
    const Merge* m = merge_at(pos);
    if (!m || m->rank != int32_t(c >> 32)) continue;
    Symbol& s = symbols[pos];
    Symbol& absorbed = symbols[s.next];
    s.id = m->result;
    s.next = absorbed.next;
    absorbed.id = -1;
    if (s.next >= 0) symbols[s.next].prev = pos;
    push(s.prev);
    push(pos);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace mamba
