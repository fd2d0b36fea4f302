// Text <-> token ids. Three kinds share one small interface: bytes (no files), GPT-2's
// encoder.json + vocab.bpe, and a Hugging Face tokenizer.json with a BPE model (GPT-2, GPT-NeoX,
// Llama-2/3, Qwen2/3, Gemma-3 and the like; docs/data.md lists the supported parts).
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
  // The bytes one token adds inside a text. Throws mamba::Error for an id outside
  // [0, vocab_size).
  virtual std::string token_bytes(int32_t id) const = 0;
  // The text of `ids`, as the tokenizer's decoder makes it (a tokenizer.json's decoder may also
  // drop the space its normalizer put at the start). decode(encode(text)) == text for valid UTF-8
  // text (for tokenizers that map a character such as U+2581 to a space: text without it).
  virtual std::string decode(const std::vector<int32_t>& ids) const;
  // The id of a token given by its text as the vocab or added_tokens write it, or -1.
  virtual int32_t token_id(std::string_view token) const = 0;

  int vocab_size() const { return vocab_size_; }
  // The end-of-text token that separates documents.
  int32_t eot_id() const { return eot_id_; }
  // The token a tokenizer.json's post-processor puts before a text (Llama's <s>, Gemma's <bos>),
  // or -1.
  int32_t bos_id() const { return bos_id_; }
  // True when a text cut by split_into_segments encodes, piece by piece, to the ids of the whole.
  bool encodes_segments() const { return encodes_segments_; }
  // "byte", "gpt2-bpe" or "hf-bpe": the kind, for logs and shard attributes.
  const std::string& name() const { return name_; }
  // Fingerprint of what defines the ids: the tokenizer.json bytes, encoder.json then vocab.bpe
  // bytes, or a fixed description for "byte". Shards made with different tokenizers differ here.
  const std::string& sha256() const { return sha256_; }

 protected:
  Tokenizer(std::string name, std::string sha256, int vocab_size, int32_t eot_id,
            int32_t bos_id = -1, bool encodes_segments = true)
      : name_(std::move(name)),
        sha256_(std::move(sha256)),
        vocab_size_(vocab_size),
        eot_id_(eot_id),
        bos_id_(bos_id),
        encodes_segments_(encodes_segments) {}
  void check_id(int32_t id) const;

 private:
  std::string name_;
  std::string sha256_;
  int vocab_size_;
  int32_t eot_id_;
  int32_t bos_id_;
  bool encodes_segments_;
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
