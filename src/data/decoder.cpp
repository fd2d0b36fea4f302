#include "data/decoder.h"

#include "data/bpe.h"
#include "data/hf_json.h"

namespace mamba {

namespace {

// <0xAB> -> 0xAB, or -1.
int fallback_byte(const std::string& token) {
  if (token.size() != 6 || token.compare(0, 3, "<0x") != 0 || token[5] != '>') return -1;
  int value = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = token[k];
    const int digit = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                             : -1;
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

}  // namespace

Decoder Decoder::byte_level() {
  Decoder d;
  Step step;
  step.kind = Kind::kByteLevel;
  d.steps_.push_back(step);
  return d;
}

Decoder Decoder::from_json(const nlohmann::json& j, const std::string& path, bool byte_level) {
  if (j.is_null()) return byte_level ? Decoder::byte_level() : Decoder();
  Decoder d;
  for (const hf::json& s : hf::steps(path, j, "decoders")) {
    const std::string type = hf::type_of(s);
    Step step;
    if (type == "ByteLevel") {
      step.kind = Kind::kByteLevel;
    } else if (type == "Metaspace") {
      step.kind = Kind::kMetaspace;
      step.text = hf::text(path, s, "replacement", "\u2581");
      const std::string scheme =
          hf::text(path, s, "prepend_scheme",
                   hf::flag(path, s, "add_prefix_space", true) ? "always" : "never");
      step.prepend = scheme != "never";
    } else if (type == "ByteFallback") {
      step.kind = Kind::kByteFallback;
    } else if (type == "Fuse") {
      step.kind = Kind::kFuse;
    } else if (type == "Strip") {
      step.kind = Kind::kStrip;
      step.text = hf::text(path, s, "content", " ");
      for (const char* key : {"start", "stop"}) {
        const hf::json& v = hf::member(s, key);
        if (!v.is_number_integer() || v.get<int64_t>() < 0)
          hf::corrupt(path, std::string("Strip.") + key, v, "a count");
        (key[2] == 'a' ? step.start : step.stop) = v.get<size_t>();
      }
    } else if (type == "Replace") {
      step.kind = Kind::kReplace;
      bool literal = false;
      const std::string pattern = hf::pattern(path, s, literal);
      step.pattern = std::make_shared<Regex>(pattern, literal, path + " decoder Replace pattern");
      step.text = hf::text(path, s, "content");
    } else {
      hf::unsupported(path, "the decoder " + s.dump().substr(0, 80));
    }
    d.steps_.push_back(std::move(step));
  }
  return d;
}

std::string Decoder::decode(std::vector<std::string> tokens, bool whole) const {
  std::vector<Regex::Span> spans;
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Kind::kByteLevel: {
        // Each token maps back to bytes; one with a character outside the byte-level alphabet
        // (an added token, say) stays as written. Then all are joined.
        std::string joined, raw;
        for (const std::string& t : tokens) joined += from_byte_level(t, raw) ? raw : t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case Kind::kMetaspace:
        for (size_t k = 0; k < tokens.size(); ++k) {
          std::string out;
          for (size_t i = 0; i < tokens[k].size();) {
            if (tokens[k].compare(i, step.text.size(), step.text) == 0) {
              out += ' ';
              i += step.text.size();
            } else {
              out += tokens[k][i++];
            }
          }
          if (whole && step.prepend && k == 0 && !out.empty() && out[0] == ' ') out.erase(0, 1);
          tokens[k] = std::move(out);
        }
        break;
      case Kind::kByteFallback: {
        std::vector<std::string> out;
        bool in_bytes = false;
        for (std::string& t : tokens) {
          const int b = fallback_byte(t);
          if (b < 0) {
            out.push_back(std::move(t));
            in_bytes = false;
            continue;
          }
          if (!in_bytes) out.emplace_back();
          out.back() += char(b);
          in_bytes = true;
        }
        tokens = std::move(out);
        break;
      }
      case Kind::kFuse: {
        std::string joined;
        for (const std::string& t : tokens) joined += t;
        tokens.assign(1, std::move(joined));
        break;
      }
      case Kind::kStrip:
        if (!whole) break;
        for (std::string& t : tokens) {
          const std::string& c = step.text;
          size_t begin = 0, end = t.size();
          for (size_t k = 0; k < step.start && t.compare(begin, c.size(), c) == 0; ++k) {
            begin += c.size();
          }
          for (size_t k = 0; k < step.stop && end >= begin + c.size() &&
                             t.compare(end - c.size(), c.size(), c) == 0;
               ++k) {
            end -= c.size();
          }
          t = t.substr(begin, end - begin);
        }
        break;
      case Kind::kReplace:
        for (std::string& t : tokens) {
          step.pattern->spans(t, spans);
          std::string out;
          for (const Regex::Span& s : spans) {
            if (s.match)
              out += step.text;
            else
              out.append(t, s.begin, s.end - s.begin);
          }
          t = std::move(out);
        }
        break;
    }
  }
  std::string text;
  for (const std::string& t : tokens) text += t;
  return text;
}

}  // namespace mamba
