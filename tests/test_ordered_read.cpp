// read_file_in_order (several reader threads, chunks in file order, the digest of the whole file)
// and SafetensorsStream (a header-only open, tensors streamed in pieces), against the
// single-threaded readers they replace for large files.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "error_of.h"
#include "io/ordered_read.h"
#include "io/safetensors.h"
#include "scratch.h"
#include "util/rng.h"

namespace mamba {
namespace {

class OrderedRead : public test::ScratchDirTest {};

std::string random_bytes(size_t n, uint64_t seed) {
  Rng rng(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = char(rng.below(256));
  return bytes;
}

TEST_F(OrderedRead, ChunksArriveInOrderWithTheFilesDigest) {
  const std::string file = path("data.bin");
  const std::string bytes = random_bytes(30001, 1);
  std::ofstream(file, std::ios::binary) << bytes;
  for (const size_t chunk : {size_t(64), size_t(4096), size_t(7777), size_t(1 << 20)}) {
    for (const int threads : {1, 3, 8}) {
      std::string seen;
      const FileDigest digest = read_file_in_order(
          file, chunk, threads, [&](uint64_t offset, const uint8_t* d, size_t n) {
            EXPECT_EQ(offset, seen.size());
            EXPECT_LE(n, chunk);
            seen.append(reinterpret_cast<const char*>(d), n);
          });
      EXPECT_EQ(seen, bytes) << chunk << " " << threads;
      EXPECT_EQ(digest, digest_file(file)) << chunk << " " << threads;
    }
  }
}

// Only the extents are read, each in chunks, in the order given; each extent's digest is the
// CRC-32 of its bytes (zlib's, computed here in one piece), and together with the gaps' they
// combine into the file's.
TEST_F(OrderedRead, ExtentsArriveInOrderWithTheirDigests) {
  const std::string file = path("data.bin");
  const std::string bytes = random_bytes(30001, 3);
  std::ofstream(file, std::ios::binary) << bytes;
  const std::vector<FileExtent> extents = {{0, 10}, {100, 9000}, {9100, 0}, {20000, 10001}};
  for (const int threads : {1, 3}) {
    std::string seen, expected;
    const std::vector<FileDigest> digests = read_extents_in_order(
        file, extents, 4096, threads, [&](uint64_t offset, const uint8_t* d, size_t n) {
          EXPECT_LE(n, 4096u);
          EXPECT_EQ(bytes.substr(offset, n), std::string(reinterpret_cast<const char*>(d), n));
          seen.append(reinterpret_cast<const char*>(d), n);
        });
    ASSERT_EQ(digests.size(), extents.size());
    std::vector<DigestPiece> pieces;
    uint64_t covered = 0;
    for (size_t e = 0; e < extents.size(); ++e) {
      const std::string part = bytes.substr(extents[e].offset, extents[e].size);
      expected += part;
      EXPECT_EQ(digests[e].bytes, part.size());
      EXPECT_EQ(digests[e].crc32, crc32_update(0, part.data(), part.size()));
      const std::string gap = bytes.substr(covered, extents[e].offset - covered);
      pieces.push_back({covered, gap.size(), crc32_update(0, gap.data(), gap.size())});
      pieces.push_back({extents[e].offset, digests[e].bytes, digests[e].crc32});
      covered = extents[e].offset + extents[e].size;
    }
    const std::string tail = bytes.substr(covered);
    pieces.push_back({covered, tail.size(), crc32_update(0, tail.data(), tail.size())});
    EXPECT_EQ(seen, expected);
    EXPECT_EQ(combine_pieces(pieces, bytes.size(), file), digest_file(file));
  }
  const std::string past_end = test::error_of([&] {
    read_extents_in_order(file, {{30000, 2}}, 4096, 2, [](uint64_t, const uint8_t*, size_t) {});
  });
  EXPECT_NE(past_end.find("cannot read " + file), std::string::npos) << past_end;
  const std::string gap = test::error_of([&] {
    combine_pieces({{0, 10, 0}, {11, 5, 0}}, 16, "f");
  });
  EXPECT_NE(gap.find("leave bytes 10 to 11 uncovered"), std::string::npos) << gap;
}

TEST_F(OrderedRead, ConsumerErrorAndMissingFileStopCleanly) {
  const std::string file = path("data.bin");
  std::ofstream(file, std::ios::binary) << random_bytes(50000, 2);
  const std::string error = test::error_of([&] {
    read_file_in_order(file, 1000, 4, [&](uint64_t offset, const uint8_t*, size_t) {
      if (offset == 20000) throw_error("stop here");
    });
  });
  EXPECT_EQ(error, "stop here");
  const std::string missing = test::error_of([&] {
    read_file_in_order(path("none.bin"), 1000, 2, [](uint64_t, const uint8_t*, size_t) {});
  });
  EXPECT_NE(missing.find("cannot open " + path("none.bin")), std::string::npos) << missing;
}

TEST_F(OrderedRead, SafetensorsStreamDeliversWhatTheReaderReads) {
  const std::string file = path("t.safetensors");
  std::vector<float> a(1000), b(37);
  Rng rng(3);
  for (float& x : a) x = float(rng.uniform());
  for (float& x : b) x = float(rng.uniform());
  const FileDigest written = write_safetensors(
      file, {{"a", DType::F32, {10, 100}, a.data()}, {"b", DType::F32, {37}, b.data()}},
      {{"k", "v"}});
  const SafetensorsStream stream(file);
  EXPECT_EQ(stream.metadata().at("k"), "v");
  EXPECT_EQ(stream.info("a").shape, (std::vector<int64_t>{10, 100}));
  std::map<std::string, std::vector<float>> got = {{"a", std::vector<float>(1000)},
                                                   {"b", std::vector<float>(37)}};
  const FileDigest digest = stream.read(
      [&](const std::string& name, const TensorInfo&, uint64_t offset, const uint8_t* d, size_t n) {
        std::memcpy(reinterpret_cast<uint8_t*>(got[name].data()) + offset, d, n);
      },
      64, 3);
  EXPECT_EQ(digest, written);
  const SafetensorsReader reader(file);
  EXPECT_EQ(got["a"], reader.read_f32("a"));
  EXPECT_EQ(got["b"], reader.read_f32("b"));
}

TEST_F(OrderedRead, SafetensorsStreamRefusesATruncatedHeader) {
  const std::string file = path("short.safetensors");
  std::ofstream(file, std::ios::binary) << std::string("\x40\0\0\0\0\0\0\0{}", 10);
  const std::string error = test::error_of([&] { SafetensorsStream{file}; });
  EXPECT_NE(error.find("header length 64 exceeds the 2 bytes"), std::string::npos) << error;
}

}  // namespace
}  // namespace mamba
