// `mamba prepare` and `mamba tokenize` as a user runs them: shards that read back identical to
// the token stream, the documented split and shard sizes, and one-line errors naming the file
// for bad input.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/text.h"
#include "data/tokenizer.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;
using test::scratch_dir;
using test::write_text;

const std::string kTokenizerDir = std::string(MAMBA_TEST_DATA) + "/tokenizer";

std::vector<int32_t> read_split(const std::string& pattern, std::vector<ShardInfo>* infos) {
  std::vector<int32_t> tokens;
  for (const std::string& path : glob_sorted(pattern)) {
    ShardReader reader(path);
    std::vector<int32_t> part(size_t(reader.info().num_tokens));
    reader.read(0, int64_t(part.size()), part.data());
    tokens.insert(tokens.end(), part.begin(), part.end());
    if (infos) infos->push_back(reader.info());
  }
  return tokens;
}

// A small corpus of eight documents: three text files (one long enough to be cut into several
// segments), a JSONL file of four lines plus blank and empty-text lines, and a Markdown file.
struct Corpus {
  std::string dir;
  std::vector<std::string> documents;  // in input order
};

Corpus make_corpus() {
  Corpus c{scratch_dir("corpus"), {}};
  std::string book;
  for (int i = 0; i < 6000; ++i) {
    book +=
        "Chapter " + std::to_string(i) + ". It's a truth universally acknowledged, na\u00efvely.\n";
    if (i % 7 == 0) book += "\n  Indented \u201cquote\u201d \u2014 caf\u00e9 \U0001F30D\n";
  }
  const std::vector<std::pair<std::string, std::string>> files = {
      {"a.txt", "First document.\nTwo lines.\n"},
      {"b/book.txt", book},
      {"b/c.md", "# Title\n\nSome *markdown* text.\n"},
      {"d.jsonl",
       "{\"text\": \"json one\", \"id\": 1}\n\n{\"text\": \"json two \\u00e9\"}\n"
       "{\"text\": \"\"}\n{\"text\": \"json three\"}\n{\"text\": \"json four\\nwith newline\"}\n"},
      {"e.txt", "last document"},
      {"skipped.bin", "not a text extension"},
  };
  for (const auto& [name, text] : files) write_text(c.dir + "/" + name, text);
  c.documents = {"First document.\nTwo lines.\n",
                 book,
                 "# Title\n\nSome *markdown* text.\n",
                 "json one",
                 "json two \u00e9",
                 "json three",
                 "json four\nwith newline",
                 "last document"};
  return c;
}

TEST(PrepareCli, ShardsReadBackIdenticalToTheTokenStream) {
  const Corpus corpus = make_corpus();
  const std::string out = scratch_dir("out");
  const auto r = run_mamba("prepare --tokenizer " + kTokenizerDir + " --out " + out +
                           " --val-fraction 0.25 --shard-tokens 5000 --threads 2 " + corpus.dir);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("MB/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("prepare: 100.0%"), std::string::npos) << r.output;  // no terminal

  const std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(kTokenizerDir);
  std::vector<int32_t> train, val;
  for (size_t d = 0; d < corpus.documents.size(); ++d) {
    std::vector<int32_t>& split = is_validation_document(d, 0.25) ? val : train;
    tokenizer->encode(corpus.documents[d], split);
    split.push_back(tokenizer->eot_id());
  }
  ASSERT_GT(train.size(), 15000u);  // several shards
  std::vector<ShardInfo> infos;
  EXPECT_EQ(read_split(out + "/train-*.h5", &infos), train);
  EXPECT_EQ(read_split(out + "/val-*.h5", nullptr), val);
  EXPECT_EQ(infos.size(), (train.size() + 4999) / 5000);
  int64_t documents = 0;
  for (size_t k = 0; k < infos.size(); ++k) {
    if (k + 1 < infos.size()) {
      EXPECT_EQ(infos[k].num_tokens, 5000);
    }
    EXPECT_EQ(infos[k].vocab_size, 50257);
    EXPECT_EQ(infos[k].eos_id, 50256);
    EXPECT_EQ(infos[k].tokenizer, "hf-bpe");  // a directory with both: tokenizer.json wins
    EXPECT_EQ(infos[k].tokenizer_sha256, tokenizer->sha256());
    EXPECT_EQ(infos[k].split, "train");
    documents += infos[k].documents;
  }
  EXPECT_EQ(documents, 6);  // documents 3 and 7 went to validation

  // The trainer's loader takes them as they are.
  TokenLoader loader(out + "/train-*.h5", 64, 50280, 4, 0, 1, 7, true);
  EXPECT_EQ(loader.total_tokens(), int64_t(train.size()));

  // Same corpus, one thread and the byte tokenizer: still exactly the documents' bytes.
  const std::string bytes_out = scratch_dir("bytes");
  ASSERT_EQ(
      run_mamba("prepare --tokenizer byte --out " + bytes_out + " --val-fraction 0 --threads 1 " +
                "--quiet " + corpus.dir + "/b/book.txt '" + corpus.dir + "/*.jsonl'")
          .status,
      0);
  std::vector<int32_t> expected;
  for (size_t d : {1, 3, 4, 5, 6}) {
    for (unsigned char ch : corpus.documents[d]) expected.push_back(ch);
    expected.push_back(256);
  }
  EXPECT_EQ(read_split(bytes_out + "/train-*.h5", nullptr), expected);
  EXPECT_FALSE(fs::exists(bytes_out + "/val-0000.h5"));
}

// Shards from either form of the GPT-2 tokenizer hold the ids another encoder gave for the same
// documents (tests/data/tokenizer/gpt3_encoder_ids.json), each followed by end-of-text.
TEST(PrepareCli, BothTokenizerFormsGiveTheOutsideIds) {
  const nlohmann::json outside =
      nlohmann::json::parse(read_file(kTokenizerDir + "/gpt3_encoder_ids.json")).at("cases");
  const std::string dir = scratch_dir("hf");
  std::string jsonl;
  std::vector<int32_t> expected;
  for (const auto& c : outside) {
    const std::string text = c.at("text").get<std::string>();
    if (text.size() > 200) continue;
    jsonl += nlohmann::json{{"text", text}}.dump() + "\n";
    for (int32_t id : c.at("ids").get<std::vector<int32_t>>()) expected.push_back(id);
    expected.push_back(50256);
  }
  write_text(dir + "/in.jsonl", jsonl);
  for (const char* file : {"/tokenizer.json", "/encoder.json"}) {
    const std::string out = dir + "/out_" + std::string(file + 1);
    const auto r = run_mamba("prepare --quiet --val-fraction 0 --tokenizer " + kTokenizerDir +
                             file + " --out " + out + " " + dir + "/in.jsonl");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(read_split(out + "/train-*.h5", nullptr), expected) << file;
  }
}

TEST(PrepareCli, TokenizeEncodesDecodesAndRoundTrips) {
  const std::string dir = scratch_dir("tokenize");
  auto r = run_mamba("tokenize --tokenizer " + kTokenizerDir + " --text 'Hello world'");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.output, "15496 995\n");
  r = run_mamba("tokenize --tokenizer " + kTokenizerDir + " --decode --text '[15496, 995]'");
  EXPECT_EQ(r.output, "Hello world");
  r = run_mamba("tokenize --tokenizer " + kTokenizerDir + " --show --text 'Hi\n'");
  EXPECT_EQ(r.output, "17250\t\"Hi\"\n198\t\"\\n\"\n");

  const std::string text = "Caf\u00e9 \U0001F30D\n\n  spaces\tand tabs\nlast line without newline";
  write_text(dir + "/in.txt", text);
  for (const std::string& spec : {kTokenizerDir, std::string("byte")}) {
    ASSERT_EQ(
        std::system((std::string(MAMBA_BINARY) + " tokenize --tokenizer " + spec + " " + dir +
                     "/in.txt > " + dir + "/ids && " + MAMBA_BINARY + " tokenize --tokenizer " +
                     spec + " --decode < " + dir + "/ids > " + dir + "/back")
                        .c_str()),
        0);
    EXPECT_EQ(read_file(dir + "/back"), text) << spec;
  }

  r = run_mamba("tokenize --tokenizer " + kTokenizerDir + " --decode --text '15496 99999'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("99999"), std::string::npos) << r.output;
  r = run_mamba("tokenize --tokenizer " + kTokenizerDir + " --decode --text '15496 abc'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("'abc'"), std::string::npos) << r.output;
}

// Each bad input: non-zero exit and one line naming the file (or pattern) and what to do.
void expect_error(const std::string& args, const std::string& names) {
  const auto r = run_mamba(args);
  EXPECT_NE(r.status, 0) << args;
  EXPECT_NE(r.output.find(names), std::string::npos) << args << "\n" << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line expected:\n" << r.output;
}

TEST(PrepareCli, BadInputNamesTheFile) {
  const std::string dir = scratch_dir("bad");
  const std::string tok = " --quiet --tokenizer " + kTokenizerDir + " --out " + dir + "/out ";
  write_text(dir + "/ok.txt", "fine\n");
  expect_error("prepare" + tok + dir + "/missing.txt", dir + "/missing.txt");
  expect_error("prepare" + tok + "'" + dir + "/*.nothing'", dir + "/*.nothing");
  fs::create_directories(dir + "/empty");
  expect_error("prepare" + tok + dir + "/empty", dir + "/empty");

  write_text(dir + "/bad.jsonl", "{\"text\": \"ok\"}\n{\"body\": \"no text field\"}\n");
  expect_error("prepare" + tok + dir + "/bad.jsonl", dir + "/bad.jsonl line 2");
  expect_error("prepare" + tok + "--text-key body " + dir + "/bad.jsonl",
               dir + "/bad.jsonl line 1");
  write_text(dir + "/broken.jsonl", "{\"text\": \"ok\"\n");
  expect_error("prepare" + tok + dir + "/broken.jsonl", dir + "/broken.jsonl line 1");
  EXPECT_FALSE(fs::exists(dir + "/out/train-0000.h5"));  // a failed run leaves no shards

  write_text(dir + "/tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
  expect_error(
      "prepare --tokenizer " + dir + "/tokenizer.json --out " + dir + "/out " + dir + "/ok.txt",
      dir + "/tokenizer.json");
  expect_error("tokenize --tokenizer " + dir + "/nothing-here.json --text hi",
               dir + "/nothing-here.json");

  expect_error("prepare" + tok + "--val-fraction 0.5 " + dir + "/ok.txt", "--val-fraction 0.5");
  ASSERT_EQ(run_mamba("prepare" + tok + "--val-fraction 0 " + dir + "/ok.txt").status, 0);
  expect_error("prepare" + tok + "--val-fraction 0 " + dir + "/ok.txt", "--overwrite");
  EXPECT_EQ(run_mamba("prepare" + tok + "--val-fraction 0 --overwrite " + dir + "/ok.txt").status,
            0);
  expect_error("prepare" + tok + "--shard-tokens 0 " + dir + "/ok.txt", "--shard-tokens 0");
}

}  // namespace
}  // namespace mamba
