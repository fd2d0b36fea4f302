#include "data/tokenizer.h"

#include <sys/stat.h>

#include "data/sha256.h"
#include "util/error.h"

namespace mamba {

namespace {

constexpr int32_t kByteEot = 256;
constexpr const char* kEotText = "<|endoftext|>";

class ByteTokenizer : public Tokenizer {
 public:
  ByteTokenizer()
      : Tokenizer("byte",
                  sha256_hex("mamba byte tokenizer: ids 0-255 are bytes, 256 is end-of-text"), 257,
                  kByteEot) {}

  void encode(std::string_view text, std::vector<int32_t>& ids) const override {
    for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  }

  std::string token_bytes(int32_t id) const override {
    check_id(id);
    return id == kByteEot ? std::string(kEotText) : std::string(1, char(id));
  }

  int32_t token_id(std::string_view token) const override {
    if (token == kEotText) return kByteEot;
    return token.size() == 1 ? static_cast<unsigned char>(token[0]) : -1;
  }
};

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size_) {
    throw_error("tokenizer error: token id ", id, " is outside the ", name_, " vocab [0, ",
                vocab_size_, "): decode ids made with this tokenizer");
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) text += token_bytes(id);
  return text;
}

std::unique_ptr<Tokenizer> make_byte_tokenizer() {
  return std::make_unique<ByteTokenizer>();
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec) {
  static const char* kUsage =
      "pass 'byte', a tokenizer.json, GPT-2's encoder.json (with vocab.bpe beside it) or a "
      "directory holding either";
  if (spec == "byte") return make_byte_tokenizer();
  if (is_directory(spec)) {
    const std::string dir = spec.back() == '/' ? spec : spec + "/";
    if (exists(dir + "tokenizer.json")) return load_hf_tokenizer(dir + "tokenizer.json");
    if (exists(dir + "encoder.json") || exists(dir + "vocab.bpe")) {
      return load_gpt2_tokenizer(dir + "encoder.json", dir + "vocab.bpe");
    }
    throw_error("tokenizer error: directory ", spec,
                " holds neither tokenizer.json nor encoder.json + vocab.bpe: ", kUsage);
  }
  if (!exists(spec)) throw_error("tokenizer error: ", spec, " does not exist: ", kUsage);
  if (ends_with(spec, "encoder.json")) {
    const size_t slash = spec.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "" : spec.substr(0, slash + 1);
    return load_gpt2_tokenizer(spec, dir + "vocab.bpe");
  }
  if (ends_with(spec, ".json")) return load_hf_tokenizer(spec);
  throw_error("tokenizer error: cannot tell what kind of tokenizer ", spec, " is: ", kUsage);
}

}  // namespace mamba
