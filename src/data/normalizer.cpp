#include "data/normalizer.h"

#include "data/hf_json.h"
#include "data/unicode_case.h"
#include "data/unicode_nfc.h"
#include "data/utf8.h"

namespace mamba {

namespace {

// Bytes at the start (or end) of `s` that are Unicode White_Space.
size_t leading_space(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t next = i;
    if (!is_unicode_space(next_code_point(s, next))) break;
    i = next;
  }
  return i;
}

size_t trailing_space(const std::string& s) {
  size_t end = s.size();
  while (end > 0) {
    size_t begin = end - 1;
    while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
    size_t i = begin;
    if (!is_unicode_space(next_code_point(s, i))) break;
    end = begin;
  }
  return s.size() - end;
}

}  // namespace

Normalizer Normalizer::from_json(const nlohmann::json& j, const std::string& path) {
  Normalizer n;
  if (j.is_null()) return n;
  for (const hf::json& s : hf::steps(path, j, "normalizers")) {
    const std::string type = hf::type_of(s);
    Step step;
    if (type == "NFC") {
      step.kind = Kind::kNfc;
    } else if (type == "NFKC") {
      step.kind = Kind::kNfkc;
    } else if (type == "Lowercase") {
      step.kind = Kind::kLowercase;
    } else if (type == "Strip") {
      step.kind = Kind::kStrip;
      step.left = hf::flag(path, s, "strip_left", true);
      step.right = hf::flag(path, s, "strip_right", true);
    } else if (type == "Prepend") {
      step.kind = Kind::kPrepend;
      step.text = hf::text(path, s, "prepend");
    } else if (type == "Replace") {
      step.kind = Kind::kReplace;
      bool literal = false;
      const std::string pattern = hf::pattern(path, s, literal);
      step.pattern =
          std::make_shared<Regex>(pattern, literal, path + " normalizer Replace pattern");
      step.text = hf::text(path, s, "content");
    } else {
      hf::unsupported(path, "the normalizer " + s.dump().substr(0, 80));
    }
    n.steps_.push_back(std::move(step));
  }
  return n;
}

std::string Normalizer::apply(std::string text) const {
  std::vector<Regex::Span> spans;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kNfc:
        text = nfc_normalize(text);
        break;
      case Kind::kNfkc:
        text = nfkc_normalize(text);
        break;
      case Kind::kLowercase:
        text = unicode_lowercase(text);
        break;
      case Kind::kStrip: {
        const size_t right = step.right ? trailing_space(text) : 0;
        text.resize(text.size() - right);
        text.erase(0, step.left ? leading_space(text) : 0);
        break;
      }
      case Kind::kPrepend:
        // Hugging Face prepends to non-empty text only.
        if (!text.empty()) text.insert(0, step.text);
        break;
      case Kind::kReplace: {
        step.pattern->spans(text, spans);
        std::string out;
        out.reserve(text.size());
        for (const Regex::Span& s : spans) {
          if (s.match)
            out += step.text;
          else
            out.append(text, s.begin, s.end - s.begin);
        }
        text = std::move(out);
        break;
      }
    }
  }
  return text;
}

bool Normalizer::per_character() const {
  for (const Step& s : steps_) {
    if (s.kind != Kind::kNfc && s.kind != Kind::kNfkc && s.kind != Kind::kLowercase) return false;
  }
  return true;
}

}  // namespace mamba
