// Hugging Face's tokenizer.json, restricted to what byte-level BPE tokenizers (GPT-2, GPT-NeoX,
// the published Mamba models) use: a BPE model, a ByteLevel pre-tokenizer and decoder, optional
// NFC normalization and added tokens. Anything else is refused by name rather than guessed at.
#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.h"
#include "data/sha256.h"
#include "data/text.h"
#include "util/error.h"

namespace mamba {

namespace {

using nlohmann::json;

[[noreturn]] void unsupported(const std::string& path, const std::string& what) {
  throw_error("tokenizer error: ", path, " uses ", what,
              ", which is not supported: only byte-level BPE tokenizers (GPT-2, GPT-NeoX) are; ",
              "use such a tokenizer.json, GPT-2's encoder.json + vocab.bpe, or 'byte'");
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>()
                                                                      : "";
}

// j[key], or null when absent (j.value() would copy).
const json& member(const json& j, const char* key) {
  static const json null;
  return j.is_object() && j.contains(key) ? j[key] : null;
}

// An optional boolean setting; null or absent means the default.
bool flag(const std::string& path, const json& object, const char* key, bool default_value) {
  if (!object.is_object() || !object.contains(key) || object[key].is_null()) return default_value;
  if (!object[key].is_boolean()) {
    throw_error("tokenizer error: ", path, " sets ", key, " to ", object[key].dump(),
                ", expected true or false: the file is corrupt");
  }
  return object[key].get<bool>();
}

// A ByteLevel step, alone or as the only step of a Sequence. Returns nullptr for anything else.
const json* single_byte_level(const json& j) {
  if (type_of(j) == "ByteLevel") return &j;
  if (type_of(j) == "Sequence") {
    const char* key = j.contains("pretokenizers") ? "pretokenizers" : "decoders";
    if (j.contains(key) && j[key].size() == 1 && type_of(j[key][0]) == "ByteLevel") {
      return &j[key][0];
    }
  }
  return nullptr;
}

bool read_normalizer(const std::string& path, const json& n) {
  if (n.is_null()) return false;
  if (type_of(n) == "NFC") return true;
  if (type_of(n) == "Sequence" && n.contains("normalizers")) {
    const json& steps = n["normalizers"];
    if (steps.empty()) return false;
    if (steps.size() == 1 && type_of(steps[0]) == "NFC") return true;
  }
  unsupported(path, "the normalizer " + n.dump().substr(0, 80));
}

std::string raw_token(const std::string& text) {
  std::string raw;
  // Tokens outside the byte-level alphabet (special tokens such as "<|padding|>" can be) are
  // kept as written.
  return from_byte_level(text, raw) ? raw : text;
}

void read_model(const std::string& path, const json& m, BpeModel& model) {
  if (!m.is_object()) unsupported(path, "no \"model\" object");
  if (m.contains("type") && m["type"] != "BPE") unsupported(path, "the model type " + type_of(m));
  if (!m.contains("vocab") || !m["vocab"].is_object() || !m.contains("merges") ||
      !m["merges"].is_array()) {
    throw_error("tokenizer error: ", path, " has no model.vocab object or model.merges list: ",
                "the file is truncated or not a BPE tokenizer.json");
  }
  const auto option_set = [&](const char* key) {
    if (!m.contains(key) || m[key].is_null()) return false;
    const json& v = m[key];
    return !(v == false || v == 0 || v == 0.0 || v == "");
  };
  for (const char* key :
       {"dropout", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
    if (option_set(key)) unsupported(path, std::string("model.") + key + " = " + m[key].dump());
  }
  model.ignore_merges = flag(path, m, "ignore_merges", false);

  for (const auto& [text, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 10'000'000) {
      throw_error("tokenizer error: ", path, " maps vocab entry '", text, "' to ", id.dump(),
                  ", not a token id: the file is corrupt");
    }
    const size_t i = id.get<size_t>();
    if (model.tokens.size() <= i) model.tokens.resize(i + 1);
    model.tokens[i] = raw_token(text);
  }
  // Older files write a merge as "left right", newer ones as ["left", "right"].
  size_t index = 0;
  for (const json& merge : m["merges"]) {
    ++index;
    std::string left, right;
    if (merge.is_string()) {
      const std::string s = merge.get<std::string>();
      const size_t space = s.find(' ');
      if (space != std::string::npos && s.find(' ', space + 1) == std::string::npos) {
        left = s.substr(0, space);
        right = s.substr(space + 1);
      }
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    }
    if (left.empty() || right.empty()) {
      throw_error("tokenizer error: ", path, " model.merges entry ", index, " (",
                  merge.dump().substr(0, 40), ") is not a pair of tokens: the file is corrupt");
    }
    model.merges.emplace_back(raw_token(left), raw_token(right));
  }
}

void read_added_tokens(const std::string& path, const json& added, BpeModel& model) {
  if (added.is_null()) return;
  for (const json& t : added) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > 10'000'000 ||
        !t.contains("content") || !t["content"].is_string()) {
      throw_error("tokenizer error: ", path, " added_tokens entry ", t.dump().substr(0, 60),
                  " lacks an id or content: the file is corrupt");
    }
    model.added.push_back(
        {t["content"].get<std::string>(), t["id"].get<int32_t>(), flag(path, t, "special", false)});
  }
}

int32_t find_eot(const BpeModel& model) {
  // The end-of-text marker under the names byte-level BPE tokenizers give it.
  for (const char* name : {"<|endoftext|>", "<|end_of_text|>", "</s>"}) {
    for (const AddedToken& t : model.added) {
      if (t.content == name) return t.id;
    }
    for (size_t id = 0; id < model.tokens.size(); ++id) {
      if (model.tokens[id] == name) return int32_t(id);
    }
  }
  return -1;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  const std::string bytes = read_file(path);
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception& e) {
    throw_error("tokenizer error: ", path, " is not valid JSON (", e.what(),
                "): the file is truncated or not a tokenizer.json");
  }
  if (!j.is_object() || !j.contains("model")) {
    throw_error("tokenizer error: ", path, " has no \"model\": it is not a Hugging Face ",
                "tokenizer.json");
  }
  BpeModel model;
  model.name = "hf-bpe";
  model.source = path;
  model.sha256 = sha256_hex(bytes);
  model.nfc = read_normalizer(path, member(j, "normalizer"));

  const json* pre = single_byte_level(member(j, "pre_tokenizer"));
  if (!pre)
    unsupported(path, "the pre_tokenizer " + member(j, "pre_tokenizer").dump().substr(0, 80));
  if (!flag(path, *pre, "use_regex", true))
    unsupported(path, "a ByteLevel pre_tokenizer without regex");
  model.add_prefix_space = flag(path, *pre, "add_prefix_space", false);
  const json& decoder = member(j, "decoder");
  if (!decoder.is_null() && !single_byte_level(decoder)) {
    unsupported(path, "the decoder " + decoder.dump().substr(0, 80));
  }

  read_model(path, j["model"], model);
  read_added_tokens(path, member(j, "added_tokens"), model);
  model.eot_id = find_eot(model);
  if (model.eot_id < 0) {
    throw_error("tokenizer error: ", path, " has no end-of-text token (<|endoftext|>, ",
                "<|end_of_text|> or </s>): add one to added_tokens");
  }
  return std::make_unique<BpeTokenizer>(std::move(model));
}

}  // namespace mamba
