#include "data/unicode_nfc.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>
#include <tuple>
#include <vector>

#include "data/text.h"
#include "data/unicode_nfc_data.h"
#include "data/utf8.h"

namespace mamba {

namespace {

// Hangul syllables decompose and compose by arithmetic (Unicode chapter 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

int combining_class(uint32_t cp) {
  const auto& table = nfc_data::kCombining;
  const auto it = std::upper_bound(std::begin(table), std::end(table), cp,
                                   [](uint32_t c, const auto& r) { return c < r.first; });
  if (it == std::begin(table)) return 0;
  const auto& range = *std::prev(it);
  return cp <= range.last ? range.ccc : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  const auto& table = nfc_data::kDecompositions;
  const auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                                   [](const auto& d, uint32_t c) { return d.code_point < c; });
  if (it == std::end(table) || it->code_point != cp) {
    out.push_back(cp);
    return;
  }
  for (uint32_t part : it->parts) {
    if (part) out.push_back(part);
  }
}

// The primary composite of (first, second), or 0.
uint32_t compose(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  const auto& table = nfc_data::kCompositions;
  const auto it =
      std::lower_bound(std::begin(table), std::end(table), std::make_pair(first, second),
                       [](const auto& c, const std::pair<uint32_t, uint32_t>& key) {
                         return std::make_pair(c.first, c.second) < key;
                       });
  return it != std::end(table) && it->first == first && it->second == second ? it->composite : 0;
}

std::vector<uint32_t> decode_utf8(std::string_view s) {
  std::vector<uint32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) cps.push_back(next_code_point(s, i));
  return cps;
}

// Appends the full compatibility decomposition of `cp` when it has one; returns false otherwise.
bool compat_decompose(uint32_t cp, std::vector<uint32_t>& out) {
  const auto& table = nfc_data::kCompatDecompositions;
  const auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                                   [](const auto& d, uint32_t c) { return d.code_point < c; });
  if (it == std::end(table) || it->code_point != cp) return false;
  out.insert(out.end(), nfc_data::kCompatParts + it->offset,
             nfc_data::kCompatParts + it->offset + it->length);
  return true;
}

// NFC, or NFKC when `compat`: decomposition, canonical ordering, canonical composition.
std::string normalize(std::string_view text, bool compat) {
  // 1. Full canonical (or compatibility) decomposition.
  std::vector<uint32_t> d;
  d.reserve(text.size());
  for (uint32_t cp : decode_utf8(text)) {
    if (!compat || !compat_decompose(cp, d)) decompose(cp, d);
  }
  // 2. Canonical ordering: each run of combining marks sorted (stably) by combining class.
  std::vector<int> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
  for (size_t i = 0; i < d.size();) {
    if (ccc[i] == 0) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < d.size() && ccc[end] != 0) ++end;
    std::vector<std::pair<int, uint32_t>> run;
    for (size_t k = i; k < end; ++k) run.emplace_back(ccc[k], d[k]);
    std::stable_sort(run.begin(), run.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (size_t k = i; k < end; ++k) std::tie(ccc[k], d[k]) = run[k - i];
    i = end;
  }
  // 3. Canonical composition: a mark joins the last starter unless a mark of the same or a
  // higher class, or another starter, stands between them ("blocked").
  std::vector<uint32_t> out;
  out.reserve(d.size());
  size_t starter = SIZE_MAX;
  int last_ccc = 0;
  bool between = false;
  for (size_t i = 0; i < d.size(); ++i) {
    if (starter != SIZE_MAX && (!between || (last_ccc != 0 && last_ccc < ccc[i]))) {
      const uint32_t composite = compose(out[starter], d[i]);
      if (composite) {
        out[starter] = composite;
        continue;
      }
    }
    if (ccc[i] == 0) {
      starter = out.size();
      between = false;
    } else {
      between = true;
      last_ccc = ccc[i];
    }
    out.push_back(d[i]);
  }
  std::string result;
  result.reserve(text.size());
  for (uint32_t cp : out) append_utf8(cp, result);
  return result;
}

// Normalizes only the runs of non-ASCII text, each with the ASCII character before it (which may
// compose with what follows). A cut before an ASCII character is safe: it is a starter that blocks
// reordering, and no composition has it as its second character. `skip` says a run needs no work.
template <typename Skip>
std::string normalize_runs(std::string_view text, bool compat, Skip skip) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && static_cast<unsigned char>(text[j]) < 0x80) ++j;
    if (j == text.size()) {
      out.append(text.substr(i));
      break;
    }
    const size_t run = j > i ? j - 1 : j;
    out.append(text.substr(i, run - i));
    size_t k = j;
    while (k < text.size() && static_cast<unsigned char>(text[k]) >= 0x80) ++k;
    const std::string_view part = text.substr(run, k - run);
    if (skip(part))
      out.append(part);
    else
      out += normalize(part, compat);
    i = k;
  }
  return out;
}

}  // namespace

std::string nfc_normalize(std::string_view text) {
  // Every byte of a code point below U+0300 is below 0xCC (U+0300 is CC 80 in UTF-8), and text
  // of such code points is already in NFC.
  return normalize_runs(text, false, [](std::string_view part) {
    return std::none_of(part.begin(), part.end(),
                        [](char c) { return static_cast<unsigned char>(c) >= 0xCC; });
  });
}

std::string nfkc_normalize(std::string_view text) {
  // Latin-1 already has compatibility mappings (U+00A0, U+00B2, ...), so only ASCII is skipped.
  return normalize_runs(text, true, [](std::string_view) { return false; });
}

}  // namespace mamba
