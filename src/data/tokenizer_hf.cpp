// Hugging Face's tokenizer.json with a BPE model: the normalizer, pre-tokenizer, decoder and
// post-processor steps that BPE language-model tokenizers use (GPT-2, GPT-NeoX, Llama-2/3,
// Qwen2/3, Gemma-3, ...), each read by its own file. Other model types (Unigram, WordPiece,
// WordLevel) and unknown steps are refused by name rather than guessed at.
#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.h"
#include "data/hf_json.h"
#include "data/sha256.h"
#include "data/text.h"
#include "util/error.h"

namespace mamba {

namespace {

using hf::json;

void read_model(const std::string& path, const json& m, BpeParts& parts) {
  if (!m.is_object()) hf::unsupported(path, "no \"model\" object");
  if (m.contains("type") && m["type"] != "BPE") {
    throw_error("tokenizer error: ", path, " has a ", m["type"].dump(), " model; only BPE ",
                "models are supported (Unigram and WordPiece are not): use a BPE tokenizer.json");
  }
  if (!m.contains("vocab") || !m["vocab"].is_object() || !m.contains("merges") ||
      !m["merges"].is_array()) {
    throw_error("tokenizer error: ", path, " has no model.vocab object or model.merges list: ",
                "the file is truncated or not a BPE tokenizer.json");
  }
  const json& dropout = hf::member(m, "dropout");
  if (!dropout.is_null() && dropout != 0 && dropout != 0.0) {
    hf::unsupported(path, "model.dropout = " + dropout.dump() + " (random merges)");
  }
  BpeOptions& o = parts.options;
  o.unk_token = hf::text(path, m, "unk_token");
  o.fuse_unk = hf::flag(path, m, "fuse_unk", false);
  o.byte_fallback = hf::flag(path, m, "byte_fallback", false);
  o.ignore_merges = hf::flag(path, m, "ignore_merges", false);
  o.continuing_subword_prefix = hf::text(path, m, "continuing_subword_prefix");
  o.end_of_word_suffix = hf::text(path, m, "end_of_word_suffix");

  for (const auto& [text, id] : m["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > 10'000'000) {
      hf::corrupt(path, "model.vocab['" + text + "']", id, "a token id");
    }
    const size_t i = id.get<size_t>();
    if (parts.tokens.size() <= i) parts.tokens.resize(i + 1);
    parts.tokens[i] = text;
  }
  // Older files write a merge as "left right", newer ones as ["left", "right"].
  size_t index = 0;
  parts.merges.reserve(m["merges"].size());
  for (const json& merge : m["merges"]) {
    ++index;
    std::string left, right;
    if (merge.is_string()) {
      const std::string& s = merge.get_ref<const std::string&>();
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
      hf::corrupt(path, "model.merges entry " + std::to_string(index), merge, "a pair of tokens");
    }
    parts.merges.emplace_back(std::move(left), std::move(right));
  }
}

void read_added_tokens(const std::string& path, const json& added, BpeParts& parts) {
  if (added.is_null()) return;
  for (const json& t : added) {
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > 10'000'000 ||
        !t.contains("content") || !t["content"].is_string() || t["content"] == "") {
      hf::corrupt(path, "an added_tokens entry", t, "an object with an id and a content");
    }
    AddedToken token;
    token.content = t["content"].get<std::string>();
    token.id = t["id"].get<int32_t>();
    token.special = hf::flag(path, t, "special", false);
    // Hugging Face's default: tokens that are not special are matched in normalized text.
    token.normalized = hf::flag(path, t, "normalized", !token.special);
    token.lstrip = hf::flag(path, t, "lstrip", false);
    token.rstrip = hf::flag(path, t, "rstrip", false);
    if (!token.special && hf::flag(path, t, "single_word", false)) {
      hf::unsupported(path, "an added token with single_word (" + token.content + ")");
    }
    parts.added.push_back(token);
  }
}

// The id of a token named in the post-processor: an added token, else a vocab token.
int32_t named_id(const BpeParts& parts, const std::string& name) {
  for (const AddedToken& t : parts.added) {
    if (t.content == name) return t.id;
  }
  for (size_t id = 0; id < parts.tokens.size(); ++id) {
    if (parts.tokens[id] == name) return int32_t(id);
  }
  return -1;
}

// The tokens the post-processor puts before and after a single text.
void read_post_processor(const std::string& path, const json& post, std::vector<int32_t>& before,
                         std::vector<int32_t>& after) {
  for (const json& p : hf::steps(path, post, "processors")) {
    const std::string type = hf::type_of(p);
    if (p.is_null() || type == "ByteLevel") continue;
    if (type == "BertProcessing" || type == "RobertaProcessing") {
      for (const char* key : {"cls", "sep"}) {
        const json& pair = hf::member(p, key);
        if (!pair.is_array() || pair.size() != 2 || !pair[1].is_number_integer()) {
          hf::corrupt(path, type + "." + key, pair, "[token, id]");
        }
        (key[0] == 'c' ? before : after).push_back(pair[1].get<int32_t>());
      }
      continue;
    }
    if (type != "TemplateProcessing") {
      hf::unsupported(path, "the post_processor " + p.dump().substr(0, 80));
    }
    const json& single = hf::member(p, "single");
    const json& specials = hf::member(p, "special_tokens");
    if (!single.is_array()) hf::corrupt(path, "TemplateProcessing.single", single, "a list");
    bool seen_text = false;
    for (const json& item : single) {
      if (item.contains("Sequence")) {
        seen_text = true;
        continue;
      }
      const json& name = hf::member(hf::member(item, "SpecialToken"), "id");
      const json& ids =
          name.is_string()
              ? hf::member(hf::member(specials, name.get_ref<const std::string&>().c_str()), "ids")
              : name;
      if (!ids.is_array()) {
        hf::corrupt(path, "TemplateProcessing.single item", item,
                    "a SpecialToken listed in special_tokens");
      }
      for (const json& id : ids) (seen_text ? after : before).push_back(id.get<int32_t>());
    }
  }
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
  BpeParts parts;
  parts.name = "hf-bpe";
  parts.source = path;
  parts.sha256 = sha256_hex(bytes);
  read_model(path, j["model"], parts);
  read_added_tokens(path, hf::member(j, "added_tokens"), parts);
  parts.normalizer = Normalizer::from_json(hf::member(j, "normalizer"), path);
  parts.pre_tokenizer = PreTokenizer::from_json(hf::member(j, "pre_tokenizer"), path);
  parts.decoder =
      Decoder::from_json(hf::member(j, "decoder"), path, parts.pre_tokenizer.byte_level_alphabet());
  parts.encodes_segments =
      parts.normalizer.per_character() && parts.pre_tokenizer.breaks_after_newlines();

  std::vector<int32_t> before, after;
  read_post_processor(path, hf::member(j, "post_processor"), before, after);
  if (before.size() > 1 || after.size() > 1) {
    hf::unsupported(path, "a post_processor that adds several tokens before or after a text");
  }
  parts.bos_id = before.empty() ? -1 : before[0];
  // The end-of-text marker: what the post-processor appends, else a token by one of the names
  // BPE tokenizers give it, special tokens first (Gemma's "</s>" is ordinary text, its "<eos>"
  // the marker).
  parts.eot_id = after.empty() ? -1 : after[0];
  const char* const names[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"};
  for (const char* name : names) {
    for (const AddedToken& t : parts.added) {
      if (parts.eot_id < 0 && t.special && t.content == name) parts.eot_id = t.id;
    }
  }
  for (const char* name : names) {
    if (parts.eot_id < 0) parts.eot_id = named_id(parts, name);
  }
  if (parts.eot_id < 0) {
    throw_error("tokenizer error: ", path, " has no end-of-text token (<|endoftext|>, ",
                "<|end_of_text|>, </s> or <eos>): add one to added_tokens");
  }
  return std::make_unique<BpeTokenizer>(std::move(parts));
}

}  // namespace mamba
