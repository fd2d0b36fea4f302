// Text <-> token ids. Three kinds share one small interface: bytes (no files), GPT-2's
// encoder.json + vocab.bpe, and a Hugging Face tokenizer.json with a byte-level BPE model (the
// format of GPT-NeoX's tokenizer, which the published Mamba models use).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mamba {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Appends the ids of `text`, which may be any bytes (invalid UTF-8 is read as U+FFFD by the BPE
  // tokenizers). The text of special tokens such as "<|endoftext|>" is encoded as ordinary text,
  // so a document cannot forge a document boundary. Thread-safe.
  virtual void encode(std::string_view text, std::vector<int32_t>& ids) const = 0;
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    encode(text, ids);
    return ids;
  }
  // The bytes of one token. Throws mamba::Error for an id outside [0, vocab_size).
  virtual std::string token_bytes(int32_t id) const = 0;
  // decode(encode(text)) == text for valid UTF-8 text.
  std::string decode(const std::vector<int32_t>& ids) const;

  int vocab_size() const { return vocab_size_; }
  int32_t eot_id() const { return eot_id_; }
  // "byte", "gpt2-bpe" or "hf-bpe": the kind, for logs and shard attributes.
  const std::string& name() const { return name_; }
  // Fingerprint of what defines the ids: the tokenizer.json bytes, encoder.json then vocab.bpe
  // bytes, or a fixed description for "byte". Shards made with different tokenizers differ here.
  const std::string& sha256() const { return sha256_; }

 protected:
  Tokenizer(std::string name, std::string sha256, int vocab_size, int32_t eot_id)
      : name_(std::move(name)),
        sha256_(std::move(sha256)),
        vocab_size_(vocab_size),
        eot_id_(eot_id) {}
  void check_id(int32_t id) const;

 private:
  std::string name_;
  std::string sha256_;
  int vocab_size_;
  int32_t eot_id_;
};

// `spec` is "byte", a tokenizer.json file, GPT-2's encoder.json (vocab.bpe next to it), or a
// directory holding tokenizer.json or encoder.json + vocab.bpe. Throws mamba::Error naming the
// file and what to pass instead.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

// Ids 0..255 are the bytes, 256 is end-of-text; vocab_size 257.
std::unique_ptr<Tokenizer> make_byte_tokenizer();
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& encoder_json,
                                               const std::string& vocab_bpe);
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& tokenizer_json);

}  // namespace mamba
