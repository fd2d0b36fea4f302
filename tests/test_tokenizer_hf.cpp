// tokenizer.json as modern language models write it. Two kinds of oracle:
// - each normalizer, pre-tokenizer, BPE option and decoder on the examples and rules of Hugging
//   Face's documentation of the format (results worked out by hand from those rules);
// - the tokenizer.json files of Llama-3, Qwen3, Llama-2 and Gemma-3 (fetched, pinned, by
//   scripts/fetch_tokenizers.sh) against ids from the reference implementation
//   (@lenml/tokenizers, a port of Hugging Face's tokenizers), written to hf_cases.json by
//   scripts/make_tokenizer_cases.js for hf_texts.json and every document of the demo corpus.
// Without the fetched files those tests skip, unless MAMBA_REQUIRE_TOKENIZERS is set (the test
// command sets it), where they fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "data/bpe.h"
#include "data/decoder.h"
#include "data/normalizer.h"
#include "data/pre_tokenizer.h"
#include "data/prepare.h"
#include "data/sha256.h"
#include "data/shard.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "data/unicode_case.h"
#include "data/unicode_nfc.h"
#include "error_of.h"
#include "scratch.h"

namespace mamba {
namespace {

using nlohmann::json;
using test::error_of;
using test::scratch_dir;
using test::scratch_path;
using test::write_text;
using Words = std::vector<std::string>;

const std::string kRoot = std::string(MAMBA_TEST_DATA) + "/../../";
const std::string kCases = std::string(MAMBA_TEST_DATA) + "/tokenizer/";

Words pre_tokenize(const json& j, const std::string& text, bool first = true) {
  return PreTokenizer::from_json(j, "test.json").words(text, first);
}

std::string normalize(const json& j, const std::string& text) {
  return Normalizer::from_json(j, "test.json").apply(text);
}

std::string decode(const json& j, const Words& tokens) {
  return Decoder::from_json(j, "test.json", false).decode(tokens, true);
}

// ---- normalizers ----

TEST(TokenizerHf, NfkcAndLowercaseMatchUnicodeData) {
  // Expected values from Python's unicodedata.normalize("NFKC", ...) and str.lower().
  EXPECT_EQ(nfkc_normalize("\ufb01 \u2460 \uff21\uff22\uff23 \u338f \u00bd x\u00b2"),
            "fi 1 ABC kg 1\u20442 x2");
  EXPECT_EQ(nfkc_normalize("e\u0301 \u212b \u00a0"), "\u00e9 \u00c5  ");
  EXPECT_EQ(nfkc_normalize("\u1100\u1161\u11a8 \u3200"), "\uac01 (\u1100)");
  EXPECT_EQ(nfkc_normalize("plain ASCII"), "plain ASCII");
  // Only the non-ASCII runs are normalized, each with the ASCII letter before it.
  EXPECT_EQ(nfc_normalize("cafe\u0301 na\u0131\u0308ve A\u030a! \u1100\u1161x"),
            "caf\u00e9 na\u0131\u0308ve \u00c5! \uac00x");
  EXPECT_EQ(nfc_normalize("x\ufb01\u0301 y\u00b2"), "x\ufb01\u0301 y\u00b2");
  EXPECT_EQ(nfkc_normalize("x\ufb01\u0301 y\u00b2"), "xf\u00ed y2");
  EXPECT_EQ(unicode_lowercase("ABC \u0130 \u03a3\u039f\u03a3 \u1e9e \u00c9 \u0410"),
            "abc i\u0307 \u03c3\u03bf\u03c3 \u00df \u00e9 \u0430");
}

TEST(TokenizerHf, Normalizers) {
  EXPECT_EQ(normalize({{"type", "NFKC"}}, "\ufb01"), "fi");
  EXPECT_EQ(normalize({{"type", "NFC"}}, "e\u0301"), "\u00e9");
  EXPECT_EQ(normalize({{"type", "Lowercase"}}, "HeLLo \u00c9"), "hello \u00e9");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}},
                      " \t\u3000 x y \n\u00a0"),
            "x y");
  EXPECT_EQ(normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, "  x  "),
            "  x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, "x"), "\u2581x");
  EXPECT_EQ(normalize({{"type", "Prepend"}, {"prepend", "\u2581"}}, ""), "");
  EXPECT_EQ(
      normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "_"}}, "a b  c"),
      "a_b__c");
  EXPECT_EQ(normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s+"}}}, {"content", " "}},
                      "a \t\n b"),
            "a b");
  // Llama-2's: a prefix, then spaces to U+2581; a Sequence applies its steps in order.
  const json llama2 = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", "\u2581"}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  EXPECT_EQ(normalize(llama2, "Hey friend"), "\u2581Hey\u2581friend");
  EXPECT_EQ(normalize({{"type", "Sequence"},
                       {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}},
                      "\uff21B"),
            "ab");
  const std::string e = error_of([] { normalize({{"type", "BertNormalizer"}}, "x"); });
  EXPECT_NE(e.find("test.json"), std::string::npos) << e;
  EXPECT_NE(e.find("BertNormalizer"), std::string::npos) << e;
}

// ---- pre-tokenizers ----

TEST(TokenizerHf, SplitBehaviorsFollowTheDocumentedExample) {
  // The example of Hugging Face's SplitDelimiterBehavior documentation.
  const auto split = [](const char* behavior, bool invert = false) {
    return pre_tokenize({{"type", "Split"},
                         {"pattern", {{"String", "-"}}},
                         {"behavior", behavior},
                         {"invert", invert}},
                        "the-final--countdown");
  };
  EXPECT_EQ(split("Removed"), (Words{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"), (Words{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"), (Words{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"), (Words{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Words{"the", "-", "final", "--", "countdown"}));
  // invert: the pattern describes the pieces instead of the delimiters.
  EXPECT_EQ(split("Removed", true), (Words{"-", "-", "-"}));
  EXPECT_EQ(pre_tokenize({{"type", "Split"},
                          {"pattern", {{"Regex", "\\w+"}}},
                          {"behavior", "Removed"},
                          {"invert", true}},
                         "the-final--countdown"),
            (Words{"the", "final", "countdown"}));
  EXPECT_EQ(pre_tokenize({{"type", "Split"},
                          {"pattern", {{"Regex", "\\d+"}}},
                          {"behavior", "MergedWithPrevious"},
                          {"invert", false}},
                         "ab12cd3"),
            (Words{"ab12", "cd3"}));
  const std::string e = error_of([] {
    pre_tokenize(
        {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Removed"}}, "x");
  });
  EXPECT_NE(e.find("(unclosed"), std::string::npos) << e;
}

TEST(TokenizerHf, PreTokenizers) {
  // The examples of Hugging Face's pre-tokenizer documentation.
  EXPECT_EQ(pre_tokenize({{"type", "Whitespace"}}, "Hello there!"), (Words{"Hello", "there", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "WhitespaceSplit"}}, "Hello there!"),
            (Words{"Hello", "there!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Punctuation"}}, "Hello there!"), (Words{"Hello there", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", true}}, "Call 911!"),
            (Words{"Call ", "9", "1", "1", "!"}));
  EXPECT_EQ(pre_tokenize({{"type", "Digits"}, {"individual_digits", false}}, "Call 911!"),
            (Words{"Call ", "911", "!"}));
  const json metaspace = {{"type", "Metaspace"}, {"replacement", "\u2581"}};
  EXPECT_EQ(pre_tokenize(metaspace, "Hey friend!"), (Words{"\u2581Hey", "\u2581friend!"}));
  // prepend_scheme "first" prepends only where the text starts the input; "never" never.
  json first = metaspace;
  first["prepend_scheme"] = "first";
  EXPECT_EQ(pre_tokenize(first, "Hey friend!", false), (Words{"Hey", "\u2581friend!"}));
  EXPECT_EQ(pre_tokenize(first, "Hey", true), (Words{"\u2581Hey"}));
  json never = metaspace;
  never["prepend_scheme"] = "never";
  never["split"] = false;
  EXPECT_EQ(pre_tokenize(never, "Hey friend!"), (Words{"Hey\u2581friend!"}));
  // ByteLevel: GPT-2's regex, then bytes as printable characters (space = U+0120).
  EXPECT_EQ(pre_tokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}}, "Hello my friend"),
            (Words{"\u0120Hello", "\u0120my", "\u0120friend"}));
  EXPECT_EQ(pre_tokenize({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}},
                         "a b\u00e9"),
            (Words{"a\u0120b\u00c3\u00a9"}));
  // A Sequence feeds each step's pieces to the next.
  EXPECT_EQ(
      pre_tokenize(
          {{"type", "Sequence"},
           {"pretokenizers",
            {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}},
          "ab12 c3"),
      (Words{"ab", "1", "2", "c", "3"}));
  const std::string e = error_of([] { pre_tokenize({{"type", "BertPreTokenizer"}}, "x"); });
  EXPECT_NE(e.find("BertPreTokenizer"), std::string::npos) << e;
}

// ---- the BPE model ----

std::vector<int32_t> bpe(const std::vector<std::string>& tokens,
                         const std::vector<std::pair<std::string, std::string>>& merges,
                         const BpeOptions& options, const std::string& word) {
  std::vector<int32_t> ids;
  BytePairEncoder(tokens, merges, options, "test.json").encode(word, ids);
  return ids;
}

TEST(TokenizerHf, BpeModelOptions) {
  // ids:                                0    1    2     3      4         5         6
  const std::vector<std::string> tokens = {"a",      "b",    "ab",    "<unk>", "<0x63>", "<0xC3>",
                                           "<0xA9>", "abab", "b</w>", "##b",   "a##b"};
  const std::vector<std::pair<std::string, std::string>> merges = {{"a", "b"}, {"ab", "ab"}};
  BpeOptions plain;
  EXPECT_EQ(bpe(tokens, merges, plain, "abab"), (std::vector<int32_t>{7}));
  EXPECT_EQ(bpe(tokens, merges, plain, "aba"), (std::vector<int32_t>{2, 0}));
  // No unk_token: characters without a token are dropped (Hugging Face's rule), so "a" and "b"
  // meet and merge.
  EXPECT_EQ(bpe(tokens, merges, plain, "axb"), (std::vector<int32_t>{2}));
  BpeOptions unk;
  unk.unk_token = "<unk>";
  EXPECT_EQ(bpe(tokens, merges, unk, "axxb"), (std::vector<int32_t>{0, 3, 3, 1}));
  unk.fuse_unk = true;
  EXPECT_EQ(bpe(tokens, merges, unk, "axxb"), (std::vector<int32_t>{0, 3, 1}));
  // byte_fallback: a character without a token becomes its UTF-8 bytes, if all have <0xXX>
  // tokens; otherwise unk.
  BpeOptions bytes = unk;
  bytes.byte_fallback = true;
  EXPECT_EQ(bpe(tokens, merges, bytes, "c\u00e9ab"), (std::vector<int32_t>{4, 5, 6, 2}));
  EXPECT_EQ(bpe(tokens, merges, bytes, "d"), (std::vector<int32_t>{3}));
  // ignore_merges: a word that is a token is taken whole, even where merges would not make it.
  const std::vector<std::string> direct = {"a", "b", "c", "bc", "abc"};
  BpeOptions ignore;
  ignore.ignore_merges = true;
  EXPECT_EQ(bpe(direct, {{"b", "c"}}, plain, "abc"), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(bpe(direct, {{"b", "c"}}, ignore, "abc"), (std::vector<int32_t>{4}));
  // end_of_word_suffix marks the last character; continuing_subword_prefix all but the first,
  // and a merge "a" + "##b" makes "ab".
  BpeOptions suffix;
  suffix.end_of_word_suffix = "</w>";
  EXPECT_EQ(bpe(tokens, {}, suffix, "ab"), (std::vector<int32_t>{0, 8}));
  BpeOptions prefix;
  prefix.continuing_subword_prefix = "##";
  EXPECT_EQ(bpe(tokens, {}, prefix, "ab"), (std::vector<int32_t>{0, 9}));
  EXPECT_EQ(bpe({"a", "##b", "ab"}, {{"a", "##b"}}, prefix, "ab"), (std::vector<int32_t>{2}));
  // Long words (cut internally where no token joins two characters) give the same.
  std::string word;
  std::vector<int32_t> expected;
  for (int k = 0; k < 200; ++k) word += "abab", expected.push_back(7);
  EXPECT_EQ(bpe(tokens, merges, plain, word), expected);
  EXPECT_EQ(bpe(tokens, merges, unk, "a" + std::string(300, 'x') + "b"),
            (std::vector<int32_t>{0, 3, 1}));
  const std::string e = error_of([&] { bpe(tokens, {{"a", "zz"}}, plain, "a"); });
  EXPECT_NE(e.find("merge 1"), std::string::npos) << e;
}

// ---- decoders ----

TEST(TokenizerHf, Decoders) {
  EXPECT_EQ(decode({{"type", "ByteFallback"}}, {"<0x61>", "<0xC3>", "<0xA9>", "b"}), "a\u00e9b");
  EXPECT_EQ(decode({{"type", "Fuse"}}, {"a", "b", "c"}), "abc");
  EXPECT_EQ(decode({{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                   {"\u2581Hey", "\u2581friend"}),
            " Hey friend");
  EXPECT_EQ(decode({{"type", "Metaspace"}, {"replacement", "\u2581"}, {"prepend_scheme", "always"}},
                   {"\u2581Hey", "\u2581friend"}),
            "Hey friend");
  EXPECT_EQ(decode({{"type", "ByteLevel"}}, {"\u0120Hello", "\u0120w\u00c3\u00a9"}),
            " Hello w\u00e9");
  // Strip works per token: after Fuse, on the whole text (Llama-2's decoder).
  const json llama2 = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
        {{"type", "ByteFallback"}},
        {{"type", "Fuse"}},
        {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(decode(llama2, {"\u2581\u2581Hey", "<0x0A>", "\u2581you"}), " Hey\n you");
  EXPECT_EQ(
      decode({{"type", "Strip"}, {"content", " "}, {"start", 2}, {"stop", 1}}, {"   a  ", " b"}),
      " a b");
  const std::string e = error_of([] { decode({{"type", "WordPiece"}}, {"x"}); });
  EXPECT_NE(e.find("WordPiece"), std::string::npos) << e;
}

// ---- a whole tokenizer.json built here ----

// A small Llama-2-like file: byte fallback, the Prepend/Replace normalizer, its decoder and a
// TemplateProcessing post-processor adding <s>; plus added tokens of each kind.
json small_tokenizer() {
  json vocab = {{"<unk>", 0}, {"<s>", 1},     {"</s>", 2}, {"\u2581", 3},  {"a", 4},
                {"b", 5},     {"\u2581a", 6}, {"ab", 7},   {"\u2581ab", 8}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 9 + b;
  }
  const auto added = [](int id, const char* content, bool special, bool normalized) {
    return json{
        {"id", id},        {"content", content}, {"special", special},  {"normalized", normalized},
        {"lstrip", false}, {"rstrip", false},    {"single_word", false}};
  };
  return {{"added_tokens",
           {added(0, "<unk>", true, false), added(1, "<s>", true, false),
            added(2, "</s>", true, false), added(265, "<sep>", false, false),
            added(266, "<sepx>", false, false), added(267, "norm", false, true)}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "\u2581"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", json::array({json::array({"\u2581", "a"}), json::array({"a", "b"}),
                                    json::array({"\u2581a", "b"})})}}}};
}

TEST(TokenizerHf, WholePipelineOnASmallFile) {
  write_text(scratch_path("small.json"), small_tokenizer().dump());
  const std::unique_ptr<Tokenizer> t = load_tokenizer(scratch_path("small.json"));
  EXPECT_EQ(t->vocab_size(), 268);
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eot_id(), 2);
  EXPECT_FALSE(t->encodes_segments());
  // "ab b": normalized to "▁ab▁b", one word (no pre-tokenizer); "▁"+"b" has no merge.
  EXPECT_EQ(t->encode("ab b"), (std::vector<int32_t>{8, 3, 5}));
  // é has no token: its two UTF-8 bytes.
  EXPECT_EQ(t->encode("\u00e9"), (std::vector<int32_t>{3, 9 + 0xC3, 9 + 0xA9}));
  // Added tokens cut the text first, longest first; each stretch is normalized alone (so gets
  // its own prefix). Special tokens' text is ordinary text.
  EXPECT_EQ(t->encode("ab<sepx>a<sep>"), (std::vector<int32_t>{8, 266, 6, 265}));
  const std::vector<int32_t> special_text = t->encode("a<s>b");
  EXPECT_EQ(std::count(special_text.begin(), special_text.end(), 1), 0);
  // A normalized added token is matched in the normalized text: "norm" as "▁norm".
  EXPECT_EQ(t->encode("a norm"), (std::vector<int32_t>{6, 267}));
  for (const std::string text : {"ab b", "\u00e9 ab", " lead", "a<s>b", "x\ny"}) {
    EXPECT_EQ(t->decode(t->encode(text)), text) << text;
  }
  // token_bytes: the bytes inside a text (Strip applies only at a text's start).
  EXPECT_EQ(t->token_bytes(8), " ab");
  EXPECT_EQ(t->token_bytes(9 + 'A'), "A");
  EXPECT_EQ(t->token_id("\u2581ab"), 8);
  EXPECT_EQ(t->token_id("<sep>"), 265);
  EXPECT_EQ(t->token_id("nope"), -1);
}

TEST(TokenizerHf, UnsupportedFilesGetOneClearLine) {
  json unigram = small_tokenizer();
  unigram["model"]["type"] = "Unigram";
  write_text(scratch_path("unigram.json"), unigram.dump());
  std::string e = error_of([] { load_tokenizer(scratch_path("unigram.json")); });
  EXPECT_NE(e.find("unigram.json"), std::string::npos) << e;
  EXPECT_NE(e.find("Unigram"), std::string::npos) << e;

  json bad = small_tokenizer();
  bad["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "x"}}}, {"behavior", "Sideways"}};
  write_text(scratch_path("bad_behavior.json"), bad.dump());
  e = error_of([] { load_tokenizer(scratch_path("bad_behavior.json")); });
  EXPECT_NE(e.find("Sideways"), std::string::npos) << e;

  json no_unk = small_tokenizer();
  no_unk["model"]["unk_token"] = "<missing>";
  write_text(scratch_path("no_unk.json"), no_unk.dump());
  e = error_of([] { load_tokenizer(scratch_path("no_unk.json")); });
  EXPECT_NE(e.find("<missing>"), std::string::npos) << e;
}

// ---- the tokenizers of Llama-3, Qwen3, Llama-2 and Gemma-3 against the reference ----

struct Reference {
  const char* name;
  int vocab_size;
  const char* eos;        // the end-of-text token the project picks
  bool encodes_segments;  // whether prepare may cut long documents
};

const Reference kReferences[] = {
    // Llama-3's and Qwen's patterns join a punctuation mark to the letters after it ("(abc" is
    // one word), and prepare's segments may be cut between the two: whole documents for them.
    {"llama3", 128256, "<|end_of_text|>", false},
    {"qwen3", 151669, "<|endoftext|>", false},
    {"llama2", 32000, "</s>", false},
    {"gemma3", 262145, "<eos>", false},
};

void PrintTo(const Reference& r, std::ostream* os) {
  *os << r.name;
}

const json& cases() {
  static const json j = json::parse(read_file(kCases + "hf_cases.json"));
  return j;
}

const json& texts() {
  static const json j = json::parse(read_file(kCases + "hf_texts.json"));
  return j;
}

// The fetched tokenizer, or nullptr (the test then skips or fails, see the top of the file).
const Tokenizer* fetched(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> loaded;
  const std::string path = kRoot + "data/tokenizers/" + name + "/tokenizer.json";
  if (!std::filesystem::exists(path)) return nullptr;
  auto& t = loaded[name];
  if (!t) t = load_tokenizer(path);
  return t.get();
}

class ReferenceTokenizer : public ::testing::TestWithParam<Reference> {
 protected:
  void SetUp() override {
    tokenizer_ = fetched(GetParam().name);
    if (!tokenizer_) {
      const std::string why = std::string("data/tokenizers/") + GetParam().name +
                              "/tokenizer.json is missing: run scripts/fetch_tokenizers.sh";
      if (std::getenv("MAMBA_REQUIRE_TOKENIZERS")) FAIL() << why;
      GTEST_SKIP() << why;
    }
    expected_ = &cases()["tokenizers"][GetParam().name];
    ASSERT_EQ(tokenizer_->sha256(), (*expected_)["tokenizer_sha256"].get<std::string>())
        << "the fetched file is not the one hf_cases.json was made with: run "
           "scripts/fetch_tokenizers.sh";
  }
  const Tokenizer* tokenizer_ = nullptr;
  const json* expected_ = nullptr;
};

TEST_P(ReferenceTokenizer, IdsMatchTheReferenceOnEveryText) {
  const json& expected = (*expected_)["texts"];
  ASSERT_EQ(expected.size(), texts().size());
  for (size_t i = 0; i < texts().size(); ++i) {
    const std::string text = texts()[i].get<std::string>();
    const std::vector<int32_t> ids = tokenizer_->encode(text);
    EXPECT_EQ(ids, expected[i]["ids"].get<std::vector<int32_t>>()) << "text " << i << ": " << text;
    // Where the reference round-trips (all but NFC-changed or U+2581 text), so must we.
    if (expected[i]["round_trip"].get<bool>()) {
      EXPECT_EQ(tokenizer_->decode(ids), text) << "text " << i;
    }
  }
}

TEST_P(ReferenceTokenizer, VocabBosAndEos) {
  EXPECT_EQ(tokenizer_->vocab_size(), GetParam().vocab_size);
  EXPECT_EQ(tokenizer_->eot_id(), tokenizer_->token_id(GetParam().eos));
  EXPECT_GE(tokenizer_->eot_id(), 0);
  EXPECT_EQ(tokenizer_->encodes_segments(), GetParam().encodes_segments);
  // The reference's encode with special tokens: the post-processor's BOS, if any, then the ids.
  std::vector<int32_t> with_special;
  if (tokenizer_->bos_id() >= 0) with_special.push_back(tokenizer_->bos_id());
  tokenizer_->encode("Hello world", with_special);
  EXPECT_EQ(with_special, (*expected_)["with_special_tokens"].get<std::vector<int32_t>>());
}

TEST_P(ReferenceTokenizer, SegmentsEncodeLikeTheWholeTextWhereClaimed) {
  if (!tokenizer_->encodes_segments())
    GTEST_SKIP() << "prepare gives this tokenizer whole documents";
  std::string text;
  for (const json& t : texts()) text += t.get<std::string>() + "\nx\ny.\nz" + "\n";
  std::vector<int32_t> joined;
  for (std::string_view s : split_into_segments(text, 40)) tokenizer_->encode(s, joined);
  EXPECT_EQ(joined, tokenizer_->encode(text));
}

TEST_P(ReferenceTokenizer, IdsMatchTheReferenceOnTheDemoCorpus) {
  const std::string root = kRoot + cases()["corpus_root"].get<std::string>() + "/";
  const json& corpus = cases()["corpus"];
  if (!std::filesystem::exists(root + corpus[0].get<std::string>())) {
    GTEST_SKIP() << "the demo corpus is missing: run scripts/fetch_demo_data.sh";
  }
  const json& expected = (*expected_)["corpus"];
  ASSERT_EQ(expected.size(), corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::vector<int32_t> ids =
        tokenizer_->encode(read_file(root + corpus[i].get<std::string>()));
    std::string bytes(ids.size() * 4, '\0');
    for (size_t k = 0; k < ids.size(); ++k) {
      for (int b = 0; b < 4; ++b) bytes[4 * k + b] = char(uint32_t(ids[k]) >> (8 * b));
    }
    EXPECT_EQ(int64_t(ids.size()), expected[i][0].get<int64_t>()) << corpus[i];
    EXPECT_EQ(sha256_hex(bytes).substr(0, 16), expected[i][1].get<std::string>()) << corpus[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Fetched, ReferenceTokenizer, ::testing::ValuesIn(kReferences),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- prepare: BOS, EOS, --eos/--bos and uint32 shards ----

std::vector<int32_t> read_shard(const std::string& path) {
  ShardReader reader(path);
  std::vector<int32_t> ids(size_t(reader.info().num_tokens));
  reader.read(0, int64_t(ids.size()), ids.data());
  return ids;
}

TEST(TokenizerHf, PrepareAddsBosAndEosAndTakesOverrides) {
  const std::string dir = scratch_dir("prepare_bos");
  write_text(dir + "/in/a.txt", "ab b");
  write_text(dir + "/in/b.txt", "\u00e9");
  write_text(scratch_path("small_prepare.json"), small_tokenizer().dump());
  PrepareOptions o;
  o.inputs = {dir + "/in"};
  o.tokenizer = scratch_path("small_prepare.json");
  o.out_dir = dir + "/out";
  o.val_fraction = 0;
  o.verbose = false;
  prepare_corpus(o);
  EXPECT_EQ(read_shard(dir + "/out/train-0000.h5"),
            (std::vector<int32_t>{1, 8, 3, 5, 2, 1, 3, 9 + 0xC3, 9 + 0xA9, 2}));
  EXPECT_EQ(read_shard_info(dir + "/out/train-0000.h5").eos_id, 2);

  o.eos_token = "<sep>";
  o.bos_token = "none";
  o.overwrite = true;
  prepare_corpus(o);
  EXPECT_EQ(read_shard(dir + "/out/train-0000.h5"),
            (std::vector<int32_t>{8, 3, 5, 265, 3, 9 + 0xC3, 9 + 0xA9, 265}));
  EXPECT_EQ(read_shard_info(dir + "/out/train-0000.h5").eos_id, 265);

  o.bos_token = "\u2581ab";
  prepare_corpus(o);
  EXPECT_EQ(read_shard(dir + "/out/train-0000.h5")[0], 8);

  o.eos_token = "<nope>";
  const std::string e = error_of([&] { prepare_corpus(o); });
  EXPECT_NE(e.find("--eos <nope>"), std::string::npos) << e;

  // The same through the command line.
  const test::CliResult r =
      test::run_mamba("prepare --quiet --overwrite --val-fraction 0 --tokenizer " + o.tokenizer +
                      " --out " + o.out_dir + " --eos '<sep>' --bos none " + dir + "/in");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("documents: end with token 265"), std::string::npos) << r.output;
  EXPECT_EQ(read_shard(dir + "/out/train-0000.h5"),
            (std::vector<int32_t>{8, 3, 5, 265, 3, 9 + 0xC3, 9 + 0xA9, 265}));
}

TEST(TokenizerHf, LargeVocabsGoToUint32Shards) {
  const Tokenizer* qwen = fetched("qwen3");
  if (!qwen) {
    if (std::getenv("MAMBA_REQUIRE_TOKENIZERS")) FAIL() << "run scripts/fetch_tokenizers.sh";
    GTEST_SKIP() << "data/tokenizers/qwen3 is missing: run scripts/fetch_tokenizers.sh";
  }
  const std::string dir = scratch_dir("prepare_qwen");
  const std::string text = "<think>\u4e2d\u6587 and English</think>";
  write_text(dir + "/in/a.txt", text);
  PrepareOptions o;
  o.inputs = {dir + "/in"};
  o.tokenizer = kRoot + "data/tokenizers/qwen3/tokenizer.json";
  o.out_dir = dir + "/out";
  o.val_fraction = 0;
  o.verbose = false;
  prepare_corpus(o);
  std::vector<int32_t> expected = qwen->encode(text);
  ASSERT_GT(*std::max_element(expected.begin(), expected.end()), 65535);  // <think> is 151667
  expected.push_back(qwen->eot_id());
  EXPECT_EQ(read_shard(dir + "/out/train-0000.h5"), expected);
  EXPECT_EQ(read_shard_info(dir + "/out/train-0000.h5").vocab_size, 151669);
}

}  // namespace
}  // namespace mamba
