#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "error_of.h"
#include "io/safetensors.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::error_of;

class Safetensors : public test::ScratchDirTest {
 protected:
  std::string write_bytes(const std::string& name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }

  static std::string read_bytes(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
};

// The 8-byte little-endian length prefix, header text, then `data_size` zero bytes.
std::string safetensors_bytes(const std::string& header, size_t data_size) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + std::string(data_size, '\0');
}

TEST_F(Safetensors, RoundTripF32I64AndMetadata) {
  const std::vector<float> w = {1.5f, -2.0f, 0.0f, 3.25f, 1e-8f, -7.0f};
  const std::vector<int64_t> ids = {0, -1, int64_t{1} << 40, 249};
  const float scalar = 42.0f;
  const std::string p = path("model.safetensors");
  write_safetensors(p,
                    {{"z.weight", DType::F32, {2, 3}, w.data()},
                     {"a.ids", DType::I64, {4}, ids.data()},
                     {"scalar", DType::F32, {}, &scalar},
                     {"empty", DType::F32, {0, 5}, nullptr}},
                    {{"kind", "mamba_lm"}, {"step", "12"}});

  const std::string raw = read_bytes(p);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ((8 + header_len) % 8, 0u);

  SafetensorsReader r(p);
  EXPECT_EQ(r.path(), p);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a.ids", "empty", "scalar", "z.weight"}));
  EXPECT_EQ(r.metadata(),
            (std::map<std::string, std::string>{{"kind", "mamba_lm"}, {"step", "12"}}));
  EXPECT_TRUE(r.has("z.weight"));
  EXPECT_FALSE(r.has("__metadata__"));
  EXPECT_EQ(r.info("z.weight").dtype, DType::F32);
  EXPECT_EQ(r.info("z.weight").numel(), 6);
  // Tensors are laid out in the given order, not the header's sorted order.
  EXPECT_EQ(r.info("z.weight").begin, 0u);
  EXPECT_EQ(r.info("a.ids").begin, 24u);
  EXPECT_EQ(r.read_f32("z.weight", {2, 3}), w);
  EXPECT_EQ(r.read_f32("z.weight"), w);
  EXPECT_EQ(r.read_i64("a.ids", {4}), ids);
  EXPECT_EQ(r.read_f32("scalar"), std::vector<float>{42.0f});
  EXPECT_EQ(r.info("scalar").shape, std::vector<int64_t>{});
  EXPECT_TRUE(r.read_f32("empty", {0, 5}).empty());

  std::vector<float> into(6);
  r.read_f32_into("z.weight", into.data(), 6);
  EXPECT_EQ(into, w);
}

TEST_F(Safetensors, ConvertsHalfDoubleAndNarrowIntegers) {
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x3E20, 0x0000};  // 1, -2.5, 0.15625, 0
  const std::vector<uint16_t> f16 = {0x3C00, 0xC000, 0x3800, 0x0001, 0x8000, 0x7C00};
  const std::vector<double> f64 = {0.5, -1e10};
  const std::vector<int32_t> i32 = {-3, 7, 2147483647};
  const std::vector<uint8_t> u8 = {0, 255};
  const std::string p = path("mixed.safetensors");
  write_safetensors(p, {{"bf16", DType::BF16, {4}, bf16.data()},
                        {"f16", DType::F16, {2, 3}, f16.data()},
                        {"f64", DType::F64, {2}, f64.data()},
                        {"i32", DType::I32, {3}, i32.data()},
                        {"u8", DType::U8, {2}, u8.data()}});

  SafetensorsReader r(p);
  EXPECT_EQ(r.read_f32("bf16"), (std::vector<float>{1.0f, -2.5f, 0.15625f, 0.0f}));
  const std::vector<float> half = r.read_f32("f16", {2, 3});
  EXPECT_EQ(half[0], 1.0f);
  EXPECT_EQ(half[1], -2.0f);
  EXPECT_EQ(half[2], 0.5f);
  EXPECT_EQ(half[3], std::ldexp(1.0f, -24));  // smallest subnormal half
  EXPECT_TRUE(half[4] == 0.0f && std::signbit(half[4]));
  EXPECT_EQ(half[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(r.read_f32("f64"), (std::vector<float>{0.5f, -1e10f}));
  EXPECT_EQ(r.read_i64("i32"), (std::vector<int64_t>{-3, 7, 2147483647}));
  EXPECT_EQ(r.read_i64("u8"), (std::vector<int64_t>{0, 255}));
}

TEST_F(Safetensors, ReadsGoldenModelFile) {
  const std::string p = MAMBA_TEST_DATA "/mamba_tiny.safetensors";
  SafetensorsReader r(p);
  EXPECT_EQ(r.metadata().at("kind"), "mamba_lm");
  EXPECT_EQ(r.metadata().at("d_model"), "64");
  EXPECT_EQ(r.info("backbone.layers.0.mixer.in_proj.weight").shape,
            (std::vector<int64_t>{256, 64}));
  EXPECT_EQ(r.info("backbone.layers.1.mixer.conv1d.weight").shape,
            (std::vector<int64_t>{128, 1, 4}));
  EXPECT_EQ(r.read_f32("backbone.embedding.weight", {256, 64}).size(), 256u * 64u);
  const std::vector<int64_t> ids = r.read_i64("input_ids", {2, 64});
  for (int64_t id : ids) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 250);
  }
  const std::vector<float> a_log = r.read_f32("backbone.layers.0.mixer.A_log", {128, 16});
  for (float v : a_log) EXPECT_TRUE(std::isfinite(v));
}

TEST_F(Safetensors, CallerMistakesNameFileAndTensor) {
  const std::vector<float> w(6, 1.0f);
  const std::string p = path("m.safetensors");
  write_safetensors(p, {{"w", DType::F32, {2, 3}, w.data()}});
  SafetensorsReader r(p);

  std::string msg = error_of([&] { r.info("missing"); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("'missing'"), std::string::npos) << msg;

  msg = error_of([&] { r.read_f32("w", {3, 2}); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[3, 2]"), std::string::npos) << msg;

  std::vector<float> dst(5);
  msg = error_of([&] { r.read_f32_into("w", dst.data(), 5); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;

  msg = error_of([&] { r.read_i64("w"); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("F32"), std::string::npos) << msg;
}

TEST_F(Safetensors, WriterRejectsDuplicateAndReservedNames) {
  const float x = 1.0f;
  const std::string p = path("dup.safetensors");
  std::string msg = error_of([&] {
    write_safetensors(p, {{"x", DType::F32, {1}, &x}, {"x", DType::F32, {1}, &x}});
  });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  msg = error_of([&] { write_safetensors(p, {{"__metadata__", DType::F32, {1}, &x}}); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(p));
}

TEST_F(Safetensors, UnreadableFilesNameThePath) {
  const std::string missing = path("missing.safetensors");
  std::string msg = error_of([&] { SafetensorsReader r(missing); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
  EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;

  msg = error_of([&] { SafetensorsReader r(dir_); });
  EXPECT_NE(msg.find(dir_), std::string::npos) << msg;
}

TEST_F(Safetensors, TruncatedGoldenFileIsReportedAsTruncated) {
  const std::string golden = read_bytes(MAMBA_TEST_DATA "/mamba_tiny.safetensors");
  const std::string p = write_bytes("cut.safetensors", golden.substr(0, golden.size() - 100));
  const std::string msg = error_of([&] { SafetensorsReader r(p); });
  EXPECT_NE(msg.find(p), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
}

TEST_F(Safetensors, MalformedFilesNameThePathAndProblem) {
  struct Case {
    std::string bytes;
    std::string expected;  // a fragment of the message that identifies the problem
  };
  const auto entry = [](const std::string& body) { return "{\"w\": {" + body + "}}"; };
  const std::string ok_shape = "\"shape\": [2]";
  const std::string ok_offsets = "\"data_offsets\": [0, 8]";
  const std::vector<Case> cases = {
      {"", "shorter than the 8-byte"},
      {std::string("\x10\0\0\0\0\0\0", 7), "shorter than the 8-byte"},
      {std::string("\xe8\x03\0\0\0\0\0\0{}", 10), "header length 1000 exceeds"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10), "exceeds"},
      {safetensors_bytes("{not json", 0), "not valid JSON"},
      {safetensors_bytes("[1, 2]", 0), "not an object"},
      {safetensors_bytes("{\"w\": 5}", 0), "'w' has a JSON number entry"},
      {safetensors_bytes(entry(ok_shape + ", " + ok_offsets), 8), "\"dtype\""},
      {safetensors_bytes(entry("\"dtype\": 4, " + ok_shape + ", " + ok_offsets), 8), "\"dtype\""},
      {safetensors_bytes(entry("\"dtype\": \"Q7\", " + ok_shape + ", " + ok_offsets), 8),
       "unsupported dtype \"Q7\""},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_offsets), 8), "\"shape\""},
      {safetensors_bytes(entry("\"dtype\": \"F32\", \"shape\": \"2\", " + ok_offsets), 8),
       "\"shape\""},
      {safetensors_bytes(entry("\"dtype\": \"F32\", \"shape\": [-2], " + ok_offsets), 8),
       "shape entry -2"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", \"shape\": [2.5], " + ok_offsets), 8),
       "shape entry 2.5"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, "
                               "4294967296, 0], " +
                               ok_offsets),
                         8),
       "too large"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_shape), 8), "data_offsets"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_shape + ", \"data_offsets\": [0]"), 8),
       "data_offsets"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_shape + ", \"data_offsets\": [-8, 0]"),
                         8),
       "data_offsets"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_shape + ", \"data_offsets\": [8, 0]"),
                         8),
       "end before they begin"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", " + ok_shape + ", \"data_offsets\": [0, 8]"),
                         4),
       "truncated"},
      {safetensors_bytes(entry("\"dtype\": \"F32\", \"shape\": [3], " + ok_offsets), 8),
       "truncated"},
      {safetensors_bytes("{\"__metadata__\": [1]}", 0), "__metadata__"},
      {safetensors_bytes("{\"__metadata__\": {\"step\": 3}}", 0), "'step'"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ", expecting: " + cases[i].expected);
    const std::string p = write_bytes("bad" + std::to_string(i) + ".safetensors", cases[i].bytes);
    const std::string msg = error_of([&] { SafetensorsReader r(p); });
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_NE(msg.find(cases[i].expected), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace mamba
