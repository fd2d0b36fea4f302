// Long text without whitespace (base64, minified code, tables) is cut into segments that encode
// exactly like the whole text, so prepare never has to pre-tokenize a huge line at once.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cli_runner.h"
#include "data/pretokenize.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "scratch.h"
#include "util/rng.h"

namespace mamba {
namespace {

using test::run_mamba;
using test::scratch_dir;
using test::write_text;

const std::string kTokenizerDir = std::string(MAMBA_TEST_DATA) + "/tokenizer";

const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> t = load_tokenizer(kTokenizerDir + "/encoder.json");
  return *t;
}

// Text with no whitespace at all: random runs of letters, digits and punctuation (quotes
// included, so contractions such as 's occur), with some non-ASCII letters and symbols.
std::string whitespace_free(size_t bytes, uint64_t seed) {
  const std::vector<std::string> alphabet = {
      "a",  "b",   "Z",      "q",      "e",      "0",      "7",          "9",     "'",
      "'s", "'ll", "+",      "/",      "=",      ",",      ".",          "-",     "\"",
      "(",  "]",   "\u00e9", "\u00df", "\u4e2d", "\u20ac", "\U0001F30D", "\u0301"};
  Rng rng(seed);
  std::string text;
  while (text.size() < bytes) {
    const std::string& part = alphabet[rng.below(alphabet.size())];
    const uint64_t repeat = 1 + rng.below(rng.below(4) == 0 ? 12 : 3);
    for (uint64_t r = 0; r < repeat; ++r) text += part;
  }
  return text;
}

TEST(LongLines, WhitespaceFreeSegmentsEncodeLikeTheWholeText) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const std::string text = whitespace_free(20000, seed);
    const std::vector<std::string_view> segments = split_into_segments(text, 50, 200);
    ASSERT_GT(segments.size(), 60u);
    std::vector<int32_t> joined;
    std::string rejoined;
    for (std::string_view s : segments) {
      EXPECT_LE(s.size(), 200u);
      gpt2().encode(s, joined);
      rejoined += s;
    }
    ASSERT_EQ(rejoined, text);
    EXPECT_EQ(joined, gpt2().encode(text)) << "seed " << seed;
  }
}

TEST(LongLines, OnlyARunOfOneClassLongerThanTheMaximumIsForcedApart) {
  // 500 letters with no safe cut: cut at the maximum, moved back to a character boundary.
  std::string run;
  while (run.size() < 500) run += "\u00e9a";
  const std::vector<std::string_view> segments = split_into_segments(run, 50, 201);
  for (std::string_view s : segments) {
    EXPECT_LE(s.size(), 201u);
    EXPECT_NE(static_cast<unsigned char>(s[0]) & 0xC0, 0x80) << "cut inside a character";
  }
  // A run that fits the maximum is never cut.
  EXPECT_EQ(split_into_segments(run.substr(0, 200), 50, 201).size(), 1u);
}

TEST(LongLines, PrepareEncodesAHugeLineLikeTheWholeText) {
  // One 5 MB line without whitespace: more than the largest segment and several read blocks.
  const std::string dir = scratch_dir("huge_line");
  const std::string text = whitespace_free(5 << 20, 99);
  write_text(dir + "/line.txt", text);
  const auto r = run_mamba("prepare --quiet --tokenizer " + kTokenizerDir +
                           "/encoder.json --val-fraction 0 --threads 2 --out " + dir + "/out " +
                           dir + "/line.txt");
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<int32_t> expected = gpt2().encode(text);
  expected.push_back(gpt2().eot_id());
  std::vector<int32_t> tokens;
  for (const std::string& path : glob_sorted(dir + "/out/train-*.h5")) {
    ShardReader reader(path);
    std::vector<int32_t> part(size_t(reader.info().num_tokens));
    reader.read(0, int64_t(part.size()), part.data());
    tokens.insert(tokens.end(), part.begin(), part.end());
  }
  EXPECT_EQ(tokens, expected);
}

}  // namespace
}  // namespace mamba
