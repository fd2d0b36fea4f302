#include "data/bpe.h"

#include <atomic>
#include <queue>

#include "data/text.h"
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
  for (char c : bytes) append_utf8(byte_to_code_point()[static_cast<unsigned char>(c)], out);
  return out;
}

BytePairEncoder::BytePairEncoder(const std::vector<std::string>& tokens,
                                 const std::vector<std::pair<std::string, std::string>>& merges,
                                 const std::string& source)
    : instance_(next_instance++) {
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (!tokens[id].empty()) ids_.emplace(tokens[id], int32_t(id));
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = find(std::string(1, char(b)));
    if (byte_ids_[b] < 0) {
      throw_error("tokenizer error: ", source, " has no token for byte ", b,
                  ": a byte-level BPE vocab needs all 256 bytes; use the tokenizer's own files");
    }
  }
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const int32_t l = find(left), r = find(right), result = find(left + right);
    if (l < 0 || r < 0 || result < 0) {
      throw_error("tokenizer error: merge ", rank + 1, " ('", to_byte_level(left), "' + '",
                  to_byte_level(right), "') in ", source,
                  " uses or makes a token missing from the vocab: the files do not belong "
                  "together; use the vocab and merges of one tokenizer");
    }
    // The first (lowest-rank) rule for a pair wins, as in GPT-2's bpe().
    merges_.emplace(uint64_t(uint32_t(l)) << 32 | uint32_t(r), Merge{int32_t(rank), result});
  }
}

int32_t BytePairEncoder::find(std::string_view bytes) const {
  const auto it = ids_.find(std::string(bytes));
  return it == ids_.end() ? -1 : it->second;
}

void BytePairEncoder::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > kMaxCachedPieceBytes) {
    merge_piece(piece, out);
    return;
  }
  thread_local PieceCache cache;
  if (cache.owner != instance_ || cache.ids.size() >= kMaxCachedPieces) {
    cache.ids.clear();
    cache.owner = instance_;
  }
  std::string key(piece);
  const auto it = cache.ids.find(key);
  if (it != cache.ids.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  std::vector<int32_t> ids;
  merge_piece(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  cache.ids.emplace(std::move(key), std::move(ids));
}

void BytePairEncoder::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
  // Symbols form a linked list; a min-heap holds candidate merges ordered by (rank, position), so
  // the lowest-rank pair is merged first and equal ranks go left to right, as GPT-2 does. This is
  // O(n log n), which matters for long runs such as a page of spaces. Candidates made stale by an
  // earlier merge are recognised by their ids no longer matching and skipped.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, pos, left, right, result;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  const int32_t n = int32_t(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_ids_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  const auto push = [&](int32_t pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    const int32_t left = symbols[pos].id, right = symbols[symbols[pos].next].id;
    const auto it = merges_.find(uint64_t(uint32_t(left)) << 32 | uint32_t(right));
    if (it != merges_.end()) heap.push({it->second.rank, pos, left, right, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& s = symbols[c.pos];
    if (s.id != c.left || s.next < 0 || symbols[s.next].id != c.right) continue;
    Symbol& absorbed = symbols[s.next];
    s.id = c.result;
    s.next = absorbed.next;
    absorbed.id = -1;  // so candidates that start at the absorbed symbol read as stale
    if (s.next >= 0) symbols[s.next].prev = c.pos;
    push(s.prev);
    push(c.pos);
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) out.push_back(symbols[i].id);
}

}  // namespace mamba
