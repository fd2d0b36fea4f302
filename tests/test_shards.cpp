// HDF5 token shards: round trips, dtypes and attributes, and the one-line errors for files that
// are not shards, are damaged, or do not belong together.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "data/shard.h"
#include "data/text.h"
#include "error_of.h"
#include "scratch.h"
#include "shard_fixtures.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::error_of;
using test::scratch_dir;
using test::write_shard;

ShardInfo attributes(int64_t vocab, const std::string& sha = "abc",
                     const std::string& split = "train") {
  ShardInfo info;
  info.vocab_size = vocab;
  info.eos_id = vocab - 1;
  info.tokenizer = "test";
  info.tokenizer_sha256 = sha;
  info.split = split;
  return info;
}

size_t stored_type_size(const std::string& path) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  const hid_t dataset = H5Dopen2(file, "tokens", H5P_DEFAULT);
  const hid_t type = H5Dget_type(dataset);
  const hid_t plist = H5Dget_create_plist(dataset);
  const bool chunked = H5Pget_layout(plist) == H5D_CHUNKED;
  const size_t size = H5Tget_size(type);
  H5Pclose(plist);
  H5Tclose(type);
  H5Dclose(dataset);
  H5Fclose(file);
  return chunked ? size : 0;
}

TEST(Shard, RoundTripUint16) {
  const std::string dir = scratch_dir("u16");
  std::vector<int32_t> tokens(3 * 1000 * 1000 + 7);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((i * 7919) % 50257);
  const ShardInfo written = write_shard(dir + "/train-0000.h5", attributes(50257), tokens, 3);
  EXPECT_EQ(written.num_tokens, int64_t(tokens.size()));
  EXPECT_FALSE(fs::exists(dir + "/train-0000.h5.tmp"));
  EXPECT_EQ(stored_type_size(dir + "/train-0000.h5"), 2u);  // chunked uint16

  const ShardInfo info = read_shard_info(dir + "/train-0000.h5");
  EXPECT_EQ(info.vocab_size, 50257);
  EXPECT_EQ(info.eos_id, 50256);
  EXPECT_EQ(info.tokenizer, "test");
  EXPECT_EQ(info.tokenizer_sha256, "abc");
  EXPECT_EQ(info.split, "train");
  EXPECT_EQ(info.documents, 3);
  EXPECT_EQ(info.format_version, kShardFormatVersion);
  EXPECT_EQ(info.num_tokens, int64_t(tokens.size()));

  ShardReader reader(dir + "/train-0000.h5");
  std::vector<int32_t> back(tokens.size());
  reader.read(0, int64_t(back.size()), back.data());
  EXPECT_EQ(back, tokens);
  std::vector<int32_t> slice(5);
  reader.read(1234567, 5, slice.data());
  EXPECT_EQ(slice, std::vector<int32_t>(tokens.begin() + 1234567, tokens.begin() + 1234572));
  EXPECT_NE(error_of([&] { reader.read(int64_t(tokens.size()) - 2, 5, slice.data()); }), "");
}

TEST(Shard, RoundTripUint32WhenTheVocabIsLarge) {
  const std::string dir = scratch_dir("u32");
  const std::vector<int32_t> tokens = {0, 65535, 65536, 99999, 12};
  write_shard(dir + "/s.h5", attributes(100000), tokens);
  EXPECT_EQ(stored_type_size(dir + "/s.h5"), 4u);
  ShardReader reader(dir + "/s.h5");
  std::vector<int32_t> back(tokens.size());
  reader.read(0, 5, back.data());
  EXPECT_EQ(back, tokens);
  // The boundary: 65536 ids still fit uint16.
  write_shard(dir + "/t.h5", attributes(65536), {65535});
  EXPECT_EQ(stored_type_size(dir + "/t.h5"), 2u);
}

// Random ids, so a wrong offset or chunk shows as a wrong value.
std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = int32_t(gen() % uint32_t(vocab));
  return tokens;
}

// Reads random ranges (many crossing the 65536-token chunk boundaries) through `reader` and
// compares them with `tokens`.
void expect_random_reads(ShardReader& reader, const std::vector<int32_t>& tokens) {
  std::mt19937 gen(7);
  const int64_t n = int64_t(tokens.size());
  std::vector<int32_t> got;
  for (int i = 0; i < 300; ++i) {
    const int64_t count = 1 + int64_t(gen() % 3000);
    const int64_t offset = i % 3 == 0 ? std::max<int64_t>(0, (i / 3 % 2 + 1) * 65536 - count / 2)
                                      : int64_t(gen() % uint64_t(n - count));
    got.resize(size_t(count));
    reader.read(offset, count, got.data());
    ASSERT_TRUE(std::equal(got.begin(), got.end(), tokens.begin() + offset))
        << "offset " << offset << " count " << count;
  }
  got.resize(tokens.size());
  reader.read(0, n, got.data());
  EXPECT_EQ(got, tokens);
}

TEST(Shard, DirectReadsMatchHdf5Reads) {
  const std::string dir = scratch_dir("direct");
  for (int64_t vocab : {int64_t(50257), int64_t(100000)}) {  // uint16 and uint32
    const std::string path = dir + "/v" + std::to_string(vocab) + ".h5";
    const std::vector<int32_t> tokens = random_tokens(200000 + 11, vocab, uint32_t(vocab));
    write_shard(path, attributes(vocab), tokens);
    ShardReader direct(path);
    ShardReader hdf5(path, ShardAccess::hdf5);
    EXPECT_TRUE(direct.direct());  // what prepare writes is read without HDF5
    ASSERT_NE(direct.info().layout, nullptr);
    EXPECT_EQ(direct.info().layout->chunk_tokens, 65536);
    EXPECT_EQ(direct.info().layout->chunk_offsets.size(), 4u);
    EXPECT_FALSE(hdf5.direct());
    expect_random_reads(direct, tokens);
    expect_random_reads(hdf5, tokens);
    // Reopened from what read_shard_info found, without HDF5, it reads the same.
    ShardReader again(read_shard_info(path));
    EXPECT_TRUE(again.direct());
    expect_random_reads(again, tokens);
    std::vector<int32_t> slice(5);
    EXPECT_NE(error_of([&] { again.read(int64_t(tokens.size()) - 2, 5, slice.data()); }), "");
  }
}

// Replaces a shard's tokens with a dataset made by `create` (the attributes stay), as another
// tool might have stored them.
void replace_tokens(const std::string& path, const std::vector<int32_t>& tokens, hid_t file_type,
                    hid_t props) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  H5Ldelete(file, "tokens", H5P_DEFAULT);
  const hsize_t dims[1] = {tokens.size()};
  const hid_t space = H5Screate_simple(1, dims, nullptr);
  const hid_t dataset =
      H5Dcreate2(file, "tokens", file_type, space, H5P_DEFAULT, props, H5P_DEFAULT);
  H5Dwrite(dataset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, tokens.data());
  H5Dclose(dataset);
  H5Sclose(space);
  H5Fclose(file);
}

TEST(Shard, OtherLayoutsAreReadDirectlyOrThroughHdf5) {
  const std::string dir = scratch_dir("layouts");
  const std::vector<int32_t> tokens = random_tokens(150000, 50257, 3);
  const hsize_t chunk[1] = {10000};

  // Contiguous: direct, one piece.
  write_shard(dir + "/contiguous.h5", attributes(50257), {1});
  replace_tokens(dir + "/contiguous.h5", tokens, H5T_STD_U16LE, H5P_DEFAULT);
  ShardReader contiguous(dir + "/contiguous.h5");
  EXPECT_TRUE(contiguous.direct());
  EXPECT_EQ(contiguous.info().layout->chunk_offsets.size(), 1u);
  expect_random_reads(contiguous, tokens);

  // Compressed chunks: through HDF5.
  write_shard(dir + "/deflate.h5", attributes(50257), {1});
  const hid_t deflate = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(deflate, 1, chunk);
  H5Pset_deflate(deflate, 4);
  replace_tokens(dir + "/deflate.h5", tokens, H5T_STD_U16LE, deflate);
  H5Pclose(deflate);
  ShardReader compressed(dir + "/deflate.h5");
  EXPECT_FALSE(compressed.direct());
  EXPECT_EQ(read_shard_info(dir + "/deflate.h5").layout, nullptr);
  ShardReader reopened(read_shard_info(dir + "/deflate.h5"));  // through HDF5 again
  expect_random_reads(reopened, tokens);
  expect_random_reads(compressed, tokens);

  // Big-endian uint32 in uncompressed chunks: through HDF5, which swaps the bytes.
  write_shard(dir + "/big_endian.h5", attributes(50257), {1});
  const hid_t chunked = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(chunked, 1, chunk);
  replace_tokens(dir + "/big_endian.h5", tokens, H5T_STD_U32BE, chunked);
  ShardReader big_endian(dir + "/big_endian.h5");
  EXPECT_FALSE(big_endian.direct());
  expect_random_reads(big_endian, tokens);

  // Little-endian uint32 in chunks of another size: direct.
  write_shard(dir + "/odd_chunks.h5", attributes(50257), {1});
  replace_tokens(dir + "/odd_chunks.h5", tokens, H5T_STD_U32LE, chunked);
  H5Pclose(chunked);
  ShardReader odd_chunks(dir + "/odd_chunks.h5");
  EXPECT_TRUE(odd_chunks.direct());
  EXPECT_EQ(odd_chunks.info().layout->chunk_tokens, 10000);
  expect_random_reads(odd_chunks, tokens);
}

TEST(Shard, ReopeningAChangedFileNamesIt) {
  const std::string dir = scratch_dir("changed");
  const std::string path = dir + "/s.h5";
  write_shard(path, attributes(1000), random_tokens(5000, 1000, 1));
  const ShardInfo checked = read_shard_info(path);
  ASSERT_NE(checked.layout, nullptr);
  std::ofstream(path, std::ios::binary | std::ios::app) << "more";
  const std::string e = error_of([&] { ShardReader reader(checked); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("changed while in use"), std::string::npos) << e;
}

TEST(Shard, WriterRefusesIdsOutsideItsVocabAndLeavesNoFile) {
  const std::string dir = scratch_dir("refuse");
  {
    ShardWriter writer(dir + "/s.h5", attributes(100));
    const int32_t bad = 100;
    EXPECT_NE(error_of([&] { writer.append(&bad, 1); }).find("100"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir + "/s.h5"));
  EXPECT_FALSE(fs::exists(dir + "/s.h5.tmp"));
}

TEST(Shard, NotHdf5NamesTheFile) {
  const std::string dir = scratch_dir("not_hdf5");
  std::ofstream(dir + "/train-0000.h5") << "just some text, not HDF5\n";
  const std::string e = error_of([&] { read_shard_info(dir + "/train-0000.h5"); });
  EXPECT_NE(e.find(dir + "/train-0000.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("not an HDF5 file"), std::string::npos) << e;
}

TEST(Shard, TruncatedFileNamesTheFile) {
  const std::string dir = scratch_dir("truncated");
  std::vector<int32_t> tokens(200000);
  std::iota(tokens.begin(), tokens.end(), 0);
  for (auto& t : tokens) t %= 1000;
  write_shard(dir + "/full.h5", attributes(1000), tokens);
  const std::string bytes = read_file(dir + "/full.h5");
  for (size_t keep : {bytes.size() / 2, size_t(3000), size_t(100)}) {
    std::ofstream(dir + "/cut.h5", std::ios::binary) << bytes.substr(0, keep);
    const std::string e = error_of([&] {
      ShardReader reader(dir + "/cut.h5");
      std::vector<int32_t> all(size_t(reader.info().num_tokens));
      reader.read(0, int64_t(all.size()), all.data());
    });
    EXPECT_NE(e.find(dir + "/cut.h5"), std::string::npos) << keep << ": " << e;
  }
}

TEST(Shard, MissingAttributeNamesIt) {
  const std::string dir = scratch_dir("no_attr");
  const std::string path = dir + "/bare.h5";
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[1] = {4};
  const hid_t space = H5Screate_simple(1, dims, nullptr);
  const hid_t dataset =
      H5Dcreate2(file, "tokens", H5T_STD_U16LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(dataset);
  H5Sclose(space);
  H5Fclose(file);
  const std::string e = error_of([&] { read_shard_info(path); });
  EXPECT_NE(e.find(path), std::string::npos) << e;
  EXPECT_NE(e.find("'format'"), std::string::npos) << e;
}

TEST(Shard, GlobThatMatchesNothing) {
  const std::string dir = scratch_dir("glob");
  const std::string pattern = dir + "/train-*.h5";
  EXPECT_TRUE(glob_sorted(pattern).empty());
  const std::string e = error_of([&] { check_shards(pattern, 100); });
  EXPECT_NE(e.find(pattern), std::string::npos) << e;
  write_shard(dir + "/train-0001.h5", attributes(10), {1});
  write_shard(dir + "/train-0000.h5", attributes(10), {1});
  EXPECT_EQ(glob_sorted(pattern),
            (std::vector<std::string>{dir + "/train-0000.h5", dir + "/train-0001.h5"}));
}

TEST(Shard, ShardsThatDisagreeAreRefused) {
  const std::string dir = scratch_dir("disagree");
  write_shard(dir + "/a-0.h5", attributes(50257, "sha-one"), {1, 2, 3});
  write_shard(dir + "/a-1.h5", attributes(50257, "sha-two"), {1, 2, 3});
  std::string e = error_of([&] { check_shards(dir + "/a-*.h5", 50257); });
  EXPECT_NE(e.find(dir + "/a-1.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer_sha256"), std::string::npos) << e;

  write_shard(dir + "/b-0.h5", attributes(50257), {1});
  write_shard(dir + "/b-1.h5", attributes(1000), {1});
  e = error_of([&] { check_shards(dir + "/b-*.h5", 50257); });
  EXPECT_NE(e.find("vocab_size"), std::string::npos) << e;

  write_shard(dir + "/c-0.h5", attributes(50257, "abc", "train"), {1});
  write_shard(dir + "/c-1.h5", attributes(50257, "abc", "val"), {1});
  e = error_of([&] { check_shards(dir + "/c-*.h5", 50257); });
  EXPECT_NE(e.find("split"), std::string::npos) << e;

  // Shards made for a larger vocab than the model's.
  e = error_of([&] { check_shards(dir + "/b-0.h5", 256); });
  EXPECT_NE(e.find(dir + "/b-0.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("vocab_size 50257"), std::string::npos) << e;

  EXPECT_EQ(check_shards(dir + "/b-0.h5", 50280).size(), 1u);
}

}  // namespace
}  // namespace mamba
