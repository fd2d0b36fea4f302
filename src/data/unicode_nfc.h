// Unicode Normalization Forms C and KC (UAX #15), the normalizers tokenizer.json files ask for:
// text whose accents are stored as separate combining marks is composed, so it encodes to the same
// ids as its precomposed spelling; NFKC also folds compatibility characters (ligatures, full-width
// forms, superscripts) to their plain form. Tables come from unicodedata via unicode_nfc_gen.py.
#pragma once
#include <string>
#include <string_view>

namespace mamba {

// `text` must be valid UTF-8. Text without code points from U+0300 up (all ASCII and Latin-1) is
// already in NFC and is returned unchanged without decoding.
std::string nfc_normalize(std::string_view text);

// `text` must be valid UTF-8. ASCII text is returned unchanged without decoding.
std::string nfkc_normalize(std::string_view text);

}  // namespace mamba
