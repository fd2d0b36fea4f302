// Tokenizers against ground truth: every r50k (GPT-2) case of gpt-tokenizer's TestPlans.txt and
// the ids another encoder (npm gpt-3-encoder, see scripts/make_tokenizer_ids.sh) gave for runs of
// repeated characters, digits, whitespace and mixed text, through GPT-2's own files and through
// the Hugging Face tokenizer.json of the same vocab; plus round trips, the byte tokenizer, NFC,
// and the errors a user sees for bad tokenizer files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/pretokenize.h"
#include "data/sha256.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "data/unicode_nfc.h"
#include "error_of.h"
#include "scratch.h"

namespace mamba {
namespace {

using test::error_of;
using test::scratch_dir;
using test::scratch_path;
using test::write_text;

const std::string kDir = std::string(MAMBA_TEST_DATA) + "/tokenizer/";

struct Case {
  std::string sample;
  std::vector<int32_t> ids;
};

// TestPlans.txt: blocks separated by a blank line, each "EncodingName: X", "Sample: TEXT",
// "Encoded: [ids]". Samples are single lines.
std::vector<Case> load_r50k_cases() {
  const std::string text = read_file(kDir + "TestPlans.txt");
  std::vector<Case> cases;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find("\n\n", begin);
    if (end == std::string::npos) end = text.size();
    const std::string block = text.substr(begin, end - begin);
    begin = end + 2;
    const size_t l1 = block.find('\n'), l2 = block.find('\n', l1 + 1);
    if (l1 == std::string::npos || l2 == std::string::npos) continue;
    if (block.substr(0, l1) != "EncodingName: r50k_base") continue;
    Case c;
    c.sample = block.substr(l1 + 1, l2 - l1 - 1).substr(std::string("Sample: ").size());
    for (const auto& id :
         nlohmann::json::parse(block.substr(l2 + 1 + std::string("Encoded: ").size()))) {
      c.ids.push_back(id.get<int32_t>());
    }
    cases.push_back(c);
  }
  return cases;
}

// Ids made outside this project: tests/data/tokenizer/gpt3_encoder_ids.json.
std::vector<Case> load_outside_cases() {
  const nlohmann::json doc = nlohmann::json::parse(read_file(kDir + "gpt3_encoder_ids.json"));
  std::vector<Case> cases;
  for (const auto& c : doc.at("cases")) {
    cases.push_back({c.at("text").get<std::string>(), c.at("ids").get<std::vector<int32_t>>()});
  }
  return cases;
}

const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> t = load_tokenizer(kDir + "encoder.json");
  return *t;
}

const Tokenizer& hf() {
  static const std::unique_ptr<Tokenizer> t = load_tokenizer(kDir + "tokenizer.json");
  return *t;
}

std::vector<std::string> tricky_texts() {
  return {"",
          "Hello, world!\n",
          "  leading and trailing spaces  ",
          "tabs\tand\r\nCRLF\n\n\nthree newlines",
          "It's, we'll, they've, I'd, you're, he's, don't, I'M",
          "numbers 1234567890 and 3.14159 and 1,000,000",
          "Ünïcödé façade naïve coöperate 日本語のテキスト 한국어 العربية עברית",
          "emoji 👩‍👩‍👧‍👦 🇺🇳 🎉🎉🎉 and symbols ∀x∈ℝ: x² ≥ 0",
          std::string(3000, ' ') + "x" + std::string(5000, '\n'),
          std::string(20000, 'a'),
          "mixed \u00a0nbsp\u2003em-space\u3000ideographic"};
}

TEST(Tokenizer, Sha256KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Tokenizer, Gpt2FilesPassEveryR50kCase) {
  const std::vector<Case> cases = load_r50k_cases();
  ASSERT_EQ(cases.size(), 64u);
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().eot_id(), 50256);
  EXPECT_EQ(gpt2().name(), "gpt2-bpe");
  for (const Case& c : cases) {
    EXPECT_EQ(gpt2().encode(c.sample), c.ids) << c.sample;
    EXPECT_EQ(gpt2().decode(c.ids), c.sample);
  }
}

TEST(Tokenizer, HfJsonGivesIdenticalIds) {
  EXPECT_EQ(hf().vocab_size(), 50257);
  EXPECT_EQ(hf().eot_id(), 50256);
  EXPECT_EQ(hf().name(), "hf-bpe");
  EXPECT_EQ(hf().sha256(), sha256_hex(read_file(kDir + "tokenizer.json")));
  for (const Case& c : load_r50k_cases()) {
    EXPECT_EQ(hf().encode(c.sample), c.ids) << c.sample;
    EXPECT_EQ(hf().decode(c.ids), c.sample);
  }
}

// Equal-rank merges (runs of one character) must go left to right: "aaaaa" is "aaaa" + "a".
TEST(Tokenizer, BothMatchAnOutsideEncoder) {
  const std::vector<Case> cases = load_outside_cases();
  ASSERT_GT(cases.size(), 200u);
  for (const Tokenizer* t : {&gpt2(), &hf()}) {
    for (const Case& c : cases) {
      EXPECT_EQ(t->encode(c.sample), c.ids) << t->name() << ": " << c.sample;
      EXPECT_EQ(t->decode(c.ids), c.sample) << t->name();
    }
  }
}

// Ids themselves are checked against outside encoders above; this covers texts too long for them.
TEST(Tokenizer, DecodingRoundTrips) {
  for (const std::string& text : tricky_texts()) {
    EXPECT_EQ(gpt2().decode(gpt2().encode(text)), text);
    EXPECT_EQ(hf().decode(hf().encode(text)), text);
  }
}

TEST(Tokenizer, SpecialTokenTextIsOrdinaryText) {
  for (const Tokenizer* t : {&gpt2(), &hf()}) {
    const std::vector<int32_t> ids = t->encode("a<|endoftext|>b");
    EXPECT_EQ(std::count(ids.begin(), ids.end(), t->eot_id()), 0);
    EXPECT_EQ(t->decode(ids), "a<|endoftext|>b");
  }
  EXPECT_EQ(gpt2().token_bytes(50256), "<|endoftext|>");
}

TEST(Tokenizer, InvalidUtf8ReadsAsReplacementCharacter) {
  EXPECT_EQ(gpt2().encode("a\xff"
                          "b"),
            gpt2().encode("a\xEF\xBF\xBD"
                          "b"));
  EXPECT_EQ(gpt2().encode("\xE2\x82"), gpt2().encode("\xEF\xBF\xBD"));  // truncated sequence
  std::string clean;
  EXPECT_EQ(sanitize_utf8("ok \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80", clean), 3u);  // overlong,
  EXPECT_EQ(clean, "ok \xEF\xBF\xBD \xEF\xBF\xBD \xEF\xBF\xBD");  // surrogate, > U+10FFFF
}

TEST(Tokenizer, ByteTokenizer) {
  const std::unique_ptr<Tokenizer> t = load_tokenizer("byte");
  EXPECT_EQ(t->vocab_size(), 257);
  EXPECT_EQ(t->eot_id(), 256);
  const std::string text("h\xC3\xA9\0\xFF", 5);
  EXPECT_EQ(t->encode(text), (std::vector<int32_t>{'h', 0xC3, 0xA9, 0, 0xFF}));
  EXPECT_EQ(t->decode(t->encode(text)), text);
  EXPECT_EQ(t->token_bytes(256), "<|endoftext|>");
  EXPECT_NE(error_of([&] { t->token_bytes(257); }).find("257"), std::string::npos);
}

TEST(Tokenizer, SegmentsEncodeLikeTheWholeText) {
  std::string text;
  for (const Case& c : load_r50k_cases()) text += c.sample + "\n" + c.sample + " \n\n" + "x\ny\n";
  for (const std::string& t : tricky_texts()) text += t + "\n";
  const std::vector<std::string_view> segments = split_into_segments(text, 40);
  ASSERT_GT(segments.size(), 50u);
  std::vector<int32_t> joined;
  std::string rejoined;
  for (std::string_view s : segments) {
    gpt2().encode(s, joined);
    rejoined += s;
  }
  EXPECT_EQ(rejoined, text);
  EXPECT_EQ(joined, gpt2().encode(text));
}

TEST(Tokenizer, NfcMatchesUnicodeData) {
  // Expected values from Python's unicodedata.normalize("NFC", ...).
  EXPECT_EQ(nfc_normalize("e\u0301"), "\u00e9");
  EXPECT_EQ(nfc_normalize("\u1100\u1161\u11a8"), "\uac01");   // Hangul jamo
  EXPECT_EQ(nfc_normalize("a\u0301\u0328"), "\u0105\u0301");  // reordered, then composed
  EXPECT_EQ(nfc_normalize("\u212b"), "\u00c5");               // singleton
  EXPECT_EQ(nfc_normalize("\u0958"), "\u0915\u093c");         // composition exclusion
  EXPECT_EQ(nfc_normalize("\u1e0b\u0323"), "\u1e0d\u0307");
  EXPECT_EQ(nfc_normalize("q\u0307\u0323"), "q\u0323\u0307");
  EXPECT_EQ(nfc_normalize("\uac00\u11a8"), "\uac01");
  EXPECT_EQ(nfc_normalize("A\u030a\u0301x"), "\u01fax");
  EXPECT_EQ(nfc_normalize("plain ASCII and Latin-1: caf\u00e9"),
            "plain ASCII and Latin-1: caf\u00e9");
}

// Variants of the same vocab in the other shapes tokenizer.json files take.
TEST(Tokenizer, HfJsonVariants) {
  nlohmann::json base = nlohmann::json::parse(read_file(kDir + "tokenizer.json"));

  nlohmann::json arrays = base;  // merges as ["left", "right"], NFC, a non-special added token
  for (auto& m : arrays["model"]["merges"]) {
    const std::string s = m.get<std::string>();
    m = nlohmann::json::array({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  arrays["normalizer"] = {{"type", "NFC"}};
  arrays["added_tokens"].push_back(
      {{"id", 50257}, {"content", "<|sep|>"}, {"special", false}, {"normalized", false}});
  write_text(scratch_path("arrays.json"), arrays.dump());
  const std::unique_ptr<Tokenizer> t = load_tokenizer(scratch_path("arrays.json"));
  EXPECT_EQ(t->vocab_size(), 50258);
  for (const Case& c : load_r50k_cases()) EXPECT_EQ(t->encode(c.sample), c.ids);
  EXPECT_EQ(t->encode("caf"
                      "e\u0301"),
            gpt2().encode("caf\u00e9"));
  std::vector<int32_t> expected = gpt2().encode("a b");
  expected.push_back(50257);
  for (int32_t id : gpt2().encode(" c")) expected.push_back(id);
  EXPECT_EQ(t->encode("a b<|sep|> c"), expected);
  EXPECT_EQ(t->decode(expected), "a b<|sep|> c");

  nlohmann::json prefix = base;
  prefix["pre_tokenizer"]["add_prefix_space"] = true;
  write_text(scratch_path("prefix.json"), prefix.dump());
  // As Hugging Face's ByteLevel pre-tokenizer: a space is added only where none starts the text.
  const std::unique_ptr<Tokenizer> prefixed = load_tokenizer(scratch_path("prefix.json"));
  EXPECT_EQ(prefixed->encode("hello"), gpt2().encode(" hello"));
  EXPECT_EQ(prefixed->encode(" hello"), gpt2().encode(" hello"));

  nlohmann::json wordpiece = base;
  wordpiece["model"]["type"] = "WordPiece";
  write_text(scratch_path("wordpiece.json"), wordpiece.dump());
  const std::string e = error_of([&] { load_tokenizer(scratch_path("wordpiece.json")); });
  EXPECT_NE(e.find("wordpiece.json"), std::string::npos) << e;
  EXPECT_NE(e.find("WordPiece"), std::string::npos) << e;
}

TEST(Tokenizer, UnreadableTokenizerFilesNameTheFile) {
  const std::string missing = scratch_path("missing/tokenizer.json");
  EXPECT_NE(error_of([&] { load_tokenizer(missing); }).find(missing), std::string::npos);

  const std::string truncated = scratch_path("truncated.json");
  write_text(truncated, read_file(kDir + "tokenizer.json").substr(0, 5000));
  const std::string e = error_of([&] { load_tokenizer(truncated); });
  EXPECT_NE(e.find(truncated), std::string::npos) << e;
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;

  const std::string empty_dir = scratch_dir("empty_dir");
  EXPECT_NE(error_of([&] { load_tokenizer(empty_dir); }).find(empty_dir), std::string::npos);

  // encoder.json without its vocab.bpe.
  const std::string lone = scratch_dir("lone");
  std::filesystem::copy_file(kDir + "encoder.json", lone + "/encoder.json",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_NE(error_of([&] { load_tokenizer(lone); }).find(lone + "/vocab.bpe"), std::string::npos);

  const std::string bad_merges = scratch_dir("bad_merges");
  std::filesystem::copy_file(kDir + "encoder.json", bad_merges + "/encoder.json",
                             std::filesystem::copy_options::overwrite_existing);
  write_text(bad_merges + "/vocab.bpe", "#version: 0.2\nĠ t\nnot-a-merge\n");
  const std::string m = error_of([&] { load_tokenizer(bad_merges); });
  EXPECT_NE(m.find("vocab.bpe line 3"), std::string::npos) << m;
}

}  // namespace
}  // namespace mamba
