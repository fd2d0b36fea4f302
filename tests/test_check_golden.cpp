// `mamba check-golden` against the shipped golden files (from the reference implementation), and
// its handling of files that are wrong, damaged or of an unknown kind.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "cli_runner.h"
#include "io/safetensors.h"
#include "scratch.h"

namespace mamba {
namespace {

using test::run_mamba;
using test::scratch_path;

const std::string kScan = std::string(MAMBA_TEST_DATA) + "/scan_small.safetensors";
const std::string kModel = std::string(MAMBA_TEST_DATA) + "/mamba_tiny.safetensors";

// Copies a golden file with the named tensor scaled by factor (or dropped), and optionally a new
// metadata kind.
std::string rewrite(const std::string& src, const std::string& tensor, float factor,
                    const std::string& out_name, bool drop = false, const std::string& kind = "") {
  SafetensorsReader in(src);
  std::vector<std::vector<float>> floats;
  std::vector<std::vector<int64_t>> ints;
  std::vector<TensorView> views;
  floats.reserve(in.names().size());
  ints.reserve(in.names().size());
  for (const std::string& name : in.names()) {
    if (drop && name == tensor) continue;
    const TensorInfo& info = in.info(name);
    if (info.dtype == DType::I64) {
      ints.push_back(in.read_i64(name));
      views.push_back({name, DType::I64, info.shape, ints.back().data()});
    } else {
      floats.push_back(in.read_f32(name));
      if (name == tensor) {
        for (float& x : floats.back()) x *= factor;
      }
      views.push_back({name, DType::F32, info.shape, floats.back().data()});
    }
  }
  auto metadata = in.metadata();
  if (!kind.empty()) metadata["kind"] = kind;
  const std::string path = scratch_path(out_name);
  write_safetensors(path, views, metadata);
  return path;
}

TEST(CheckGolden, ScanFilePasses) {
  const auto r = run_mamba("check-golden " + kScan);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("PASS"), std::string::npos);
}

TEST(CheckGolden, ModelFilePasses) {
  const auto r = run_mamba("check-golden " + kModel);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("grad.backbone.layers.1.mixer.A_log"), std::string::npos);
  EXPECT_NE(r.output.find("after.backbone.norm_f.weight"), std::string::npos);
}

// Other sizes, odd seqlens (files from scripts/make_golden.py, an independent float64 oracle).
TEST(CheckGolden, OddSizedFilesPass) {
  for (const char* name : {"/scan_odd.safetensors", "/mamba_odd.safetensors"}) {
    const auto r = run_mamba("check-golden " + std::string(MAMBA_TEST_DATA) + name);
    EXPECT_EQ(r.status, 0) << name << "\n" << r.output;
  }
}

TEST(CheckGolden, PerturbedReferenceFails) {
  const auto scan = run_mamba("check-golden " + rewrite(kScan, "dB", 1.001f, "bad_db.st"));
  EXPECT_EQ(scan.status, 1) << scan.output;
  EXPECT_NE(scan.output.find("FAIL"), std::string::npos);
  const auto model =
      run_mamba("check-golden " + rewrite(kModel, "grad.backbone.layers.0.mixer.x_proj.weight",
                                          1.01f, "bad_grad.st"));
  EXPECT_EQ(model.status, 1) << model.output;
}

TEST(CheckGolden, MissingFileIsOneLineError) {
  const std::string path = scratch_path("does_not_exist.safetensors");
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
}

TEST(CheckGolden, TruncatedFileIsRejected) {
  std::ifstream in(kModel, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = scratch_path("truncated.safetensors");
  std::ofstream(path, std::ios::binary).write(bytes.data(), bytes.size() / 2);
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
}

TEST(CheckGolden, MalformedHeaderIsRejected) {
  const std::string path = scratch_path("malformed.safetensors");
  std::ofstream out(path, std::ios::binary);
  const std::string header = "{\"u\": {\"dtype\": \"F32\", \"shape\": [2,";
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out.close();
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
}

TEST(CheckGolden, UnknownKindIsRejected) {
  const std::string path = rewrite(kScan, "", 1.0f, "unknown_kind.st", false, "mamba3_lm");
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown kind 'mamba3_lm'"), std::string::npos) << r.output;
}

TEST(CheckGolden, MissingTensorIsNamed) {
  const std::string path = rewrite(kScan, "dC", 1.0f, "no_dc.st", true);
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("dC"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(path), std::string::npos) << r.output;
}

TEST(CheckGolden, MissingModelParameterIsNamed) {
  const std::string path =
      rewrite(kModel, "backbone.layers.1.mixer.dt_proj.bias", 1.0f, "no_param.st", true);
  const auto r = run_mamba("check-golden " + path);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("backbone.layers.1.mixer.dt_proj.bias"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace mamba
