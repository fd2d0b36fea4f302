// `mamba prepare` on gzip and zstd inputs: the same shards as from the uncompressed files (gzip
// and zstd made here by zlib and libzstd themselves), and a truncated or corrupt compressed file
// stops the run with one line naming it.
#include <gtest/gtest.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;
using test::scratch_dir;
using test::write_text;

const std::string kTokenizerDir = std::string(MAMBA_TEST_DATA) + "/tokenizer";

std::string gzip(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, uLong(data.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = uInt(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// With a content checksum, as the zstd command writes by default.
std::string zstd(const std::string& data) {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const size_t n = ZSTD_compress2(c, out.data(), out.size(), data.data(), data.size());
  EXPECT_FALSE(ZSTD_isError(n));
  ZSTD_freeCCtx(c);
  out.resize(n);
  return out;
}

std::vector<int32_t> read_split(const std::string& pattern) {
  std::vector<int32_t> tokens;
  for (const std::string& path : glob_sorted(pattern)) {
    ShardReader reader(path);
    std::vector<int32_t> part(size_t(reader.info().num_tokens));
    reader.read(0, int64_t(part.size()), part.data());
    tokens.insert(tokens.end(), part.begin(), part.end());
  }
  return tokens;
}

// A JSONL file of 300 documents and a 3 MB text file: more than one read block and several
// segments, so decompressed blocks end at arbitrary places inside lines and characters.
struct Corpus {
  std::string jsonl, text;
};

const Corpus& corpus() {
  static const Corpus c = [] {
    Corpus c;
    for (int d = 0; d < 300; ++d) {
      c.jsonl += "{\"text\": \"doc " + std::to_string(d) + " caf\\u00e9 \u00fcber \U0001F30D";
      for (int w = 0; w < d % 40; ++w) c.jsonl += " word" + std::to_string(w * d);
      c.jsonl += "\"}\n";
    }
    for (int i = 0; c.text.size() < (3 << 20); ++i) {
      c.text += "Line " + std::to_string(i) + ": na\u00efve caf\u00e9, it's (x+" +
                std::to_string(i * 7) + ")\n";
    }
    return c;
  }();
  return c;
}

std::string prepare(const std::string& in_dir, const std::string& out) {
  const auto r = run_mamba("prepare --quiet --tokenizer " + kTokenizerDir +
                           " --val-fraction 0.05 --shard-tokens 200000 --threads 2 --out " + out +
                           " " + in_dir);
  EXPECT_EQ(r.status, 0) << r.output;
  return r.output;
}

TEST(PrepareCompressed, GzipAndZstdGiveTheSameShardsAsPlainFiles) {
  const std::string root = scratch_dir("compressed");
  write_text(root + "/plain/a.jsonl", corpus().jsonl);
  write_text(root + "/plain/b.txt", corpus().text);
  write_text(root + "/gz/a.jsonl.gz", gzip(corpus().jsonl));
  // Two gzip members one after the other are one file to gzip -d, and to prepare.
  const size_t half = corpus().text.size() / 2 + 3;
  write_text(root + "/gz/b.txt.gz",
             gzip(corpus().text.substr(0, half)) + gzip(corpus().text.substr(half)));
  write_text(root + "/zst/a.jsonl.zst", zstd(corpus().jsonl));
  write_text(root + "/zst/b.txt.zst",
             zstd(corpus().text.substr(0, half)) + zstd(corpus().text.substr(half)));

  prepare(root + "/plain", root + "/out_plain");
  const std::vector<int32_t> train = read_split(root + "/out_plain/train-*.h5");
  const std::vector<int32_t> val = read_split(root + "/out_plain/val-*.h5");
  ASSERT_GT(train.size(), 400000u);  // several shards
  ASSERT_GT(val.size(), 0u);
  const Manifest plain = read_manifest(root + "/out_plain");
  for (const std::string kind : {"gz", "zst"}) {
    const std::string out = root + "/out_" + kind;
    prepare(root + "/" + kind, out);
    EXPECT_EQ(read_split(out + "/train-*.h5"), train) << kind;
    EXPECT_EQ(read_split(out + "/val-*.h5"), val) << kind;
    const Manifest m = read_manifest(out);
    EXPECT_EQ(m.splits.at("train").tokens_sha256, plain.splits.at("train").tokens_sha256) << kind;
    EXPECT_EQ(m.splits.at("val").tokens_sha256, plain.splits.at("val").tokens_sha256) << kind;
    EXPECT_EQ(m.splits.at("train").documents, plain.splits.at("train").documents) << kind;
  }
}

// A corpus of compressed parts prepared by `mpirun -np N`: each rank decompresses its own files
// as it reads them, and together they write the shards one process writes from the plain files.
TEST(PrepareCompressed, SeveralProcessesOnACompressedCorpus) {
  const std::string root = scratch_dir("compressed_parallel");
  const std::string& jsonl = corpus().jsonl;
  const std::string text = corpus().text.substr(0, 400000);
  const size_t third = jsonl.find('\n', jsonl.size() / 3) + 1;
  const size_t two_thirds = jsonl.find('\n', 2 * jsonl.size() / 3) + 1;
  const std::vector<std::string> parts = {jsonl.substr(0, third),
                                          jsonl.substr(third, two_thirds - third),
                                          jsonl.substr(two_thirds), text};
  const char* names[] = {"part-0.jsonl", "part-1.jsonl", "part-2.jsonl", "part-3.txt"};
  for (size_t i = 0; i < parts.size(); ++i) {
    write_text(root + "/plain/" + names[i], parts[i]);
    const bool gz = i % 2 == 0;
    write_text(root + "/packed/" + names[i] + (gz ? ".gz" : ".zst"),
               gz ? gzip(parts[i]) : zstd(parts[i]));
  }
  prepare(root + "/plain", root + "/out_plain");
  const Manifest plain = read_manifest(root + "/out_plain");
  for (const int ranks : {2, 3}) {
    const std::string out = root + "/out_" + std::to_string(ranks);
    const std::string command = "mpirun --allow-run-as-root --oversubscribe -np " +
                                std::to_string(ranks) + " " + MAMBA_BINARY +
                                " prepare --quiet --tokenizer " + kTokenizerDir +
                                " --val-fraction 0.05 --shard-tokens 200000 --threads 1 --out " +
                                out + " '" + root + "/packed/part-*' > " + out + ".log 2>&1";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    EXPECT_EQ(read_split(out + "/train-*.h5"), read_split(root + "/out_plain/train-*.h5"));
    EXPECT_EQ(read_split(out + "/val-*.h5"), read_split(root + "/out_plain/val-*.h5"));
    const Manifest m = read_manifest(out);
    for (const char* split : {"train", "val"}) {
      EXPECT_EQ(m.splits.at(split).tokens_sha256, plain.splits.at(split).tokens_sha256) << ranks;
      EXPECT_EQ(m.splits.at(split).documents, plain.splits.at(split).documents) << ranks;
    }
  }
}

// Runs prepare on one bad file and checks the one-line error and that nothing was left behind.
void expect_refused(const std::string& dir, const std::string& name, const std::string& bytes,
                    const std::string& reason) {
  const std::string path = dir + "/" + name;
  write_text(path, bytes);
  const std::string out = dir + "/out_" + name;
  const auto r =
      run_mamba("prepare --quiet --tokenizer byte --val-fraction 0 --out " + out + " " + path);
  EXPECT_NE(r.status, 0) << name;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(reason), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << "one line: " << r.output;
  EXPECT_FALSE(fs::exists(out + "/" + kManifestFile)) << name;
  EXPECT_TRUE(glob_sorted(out + "/*.h5").empty()) << name;
}

TEST(PrepareCompressed, TruncatedOrCorruptFilesAreNamed) {
  const std::string dir = scratch_dir("bad_compressed");
  std::string text;
  for (int i = 0; text.size() < 300000; ++i)
    text += "{\"text\": \"line " + std::to_string(i) + "\"}\n";
  const std::string gz = gzip(text), zst = zstd(text);

  expect_refused(dir, "cut.jsonl.gz", gz.substr(0, gz.size() / 2), "truncated");
  expect_refused(dir, "cut_trailer.jsonl.gz", gz.substr(0, gz.size() - 4), "truncated");
  expect_refused(dir, "cut.jsonl.zst", zst.substr(0, zst.size() / 2), "truncated");
  std::string flipped = gz;
  flipped[flipped.size() / 2] ^= 0x10;
  expect_refused(dir, "flipped.jsonl.gz", flipped, "is not valid gzip data");
  flipped = zst;
  flipped[flipped.size() / 2] ^= 0x10;
  expect_refused(dir, "flipped.jsonl.zst", flipped, "is not valid zstd data");
  expect_refused(dir, "plain.jsonl.gz", text, "is not valid gzip data");
  expect_refused(dir, "plain.jsonl.zst", text, "is not valid zstd data");
  expect_refused(dir, "empty.txt.gz", "", "is empty");
  expect_refused(dir, "empty.txt.zst", "", "is empty");
}

}  // namespace
}  // namespace mamba
