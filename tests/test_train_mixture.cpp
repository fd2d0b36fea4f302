// Training on a mixture through the CLI: source_tokens and per-source validation losses in the
// log, exact resume, the same run on 2 MPI ranks, and the one-line errors of bad mixtures.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "mpirun.h"
#include "run_fixture.h"
#include "scratch.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using test::run_mamba;

class MixtureRun : public test::RunFixture {
 protected:
  static void SetUpTestSuite() {
    RunFixture::SetUpTestSuite();
    for (const char* name : {"web", "code"}) {
      fs::create_directories(root_ / name);
      const uint64_t seed = name[0] == 'w' ? 11 : 12;
      write_corpus((root_ / name / "train-0000.h5").string(), "train", 3000, seed);
      write_corpus((root_ / name / "val-0000.h5").string(), "val", 800, seed + 10);
    }
  }

  static std::string glob(const std::string& source, const std::string& split) {
    return (root_ / source / (split + "-*.h5")).string();
  }

  // The fixture's config, training on web and code at 0.8 / 0.2 (or on `train`, YAML text) and
  // validating on both.
  static std::string mixture_config(const std::string& name, const std::string& train = "") {
    const std::string path = config(name);
    std::ifstream in(path);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t from = text.find("  train: "), to = text.find("  seq_len:");
    text.replace(from, to - from,
                 "  train: " +
                     (train.empty() ? "[{name: web, path: " + glob("web", "train") +
                                          ", weight: 0.8}, {name: code, path: " +
                                          glob("code", "train") + ", weight: 0.2}]"
                                    : train) +
                     "\n  val: [{name: web, path: " + glob("web", "val") +
                     "}, {name: code, path: " + glob("code", "val") + "}]\n");
    std::ofstream(path) << text;
    return path;
  }

  static std::vector<json> records(const std::string& run, const char* key) {
    std::vector<json> out;
    for (const std::string& line : lines(dir(run) + "/metrics.jsonl")) {
      const json j = json::parse(line);
      if (j.contains(key)) out.push_back(j);
    }
    return out;
  }
};

TEST_F(MixtureRun, LogsSourceTokensAndOneValidationLossPerSource) {
  const auto r = run_mamba("train " + mixture_config("logged") + " train.steps=20");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "| val_loss_web ")) << r.output;
  EXPECT_TRUE(test::contains(r.output, "| val_loss_code ")) << r.output;
  const std::vector<json> train = records("logged", "source_tokens");
  ASSERT_EQ(train.size(), 20u);
  for (const json& j : train) {
    const int64_t web = j["source_tokens"]["web"], code = j["source_tokens"]["code"];
    const int64_t tokens = j["tokens"];
    EXPECT_EQ(web + code, tokens);
    // Within one sample (16 tokens) of the exact shares at every step.
    EXPECT_LE(std::abs(double(web) - 0.8 * double(tokens)), 16.0) << j.dump();
  }
  const std::vector<json> evals = records("logged", "val_loss");
  ASSERT_EQ(evals.size(), 6u);  // steps 0, 4, ..., 20
  for (const json& j : evals) {
    const double web = j["val_loss_web"], code = j["val_loss_code"];
    EXPECT_NEAR(j["val_loss"].get<double>(), (web + code) / 2, 1e-9);
    EXPECT_NE(web, code);
  }
}

// 16 steps straight == 8 steps, a stop, 8 resumed: the same weights, positions and draws.
TEST_F(MixtureRun, ResumeIsBitExact) {
  ASSERT_EQ(run_mamba("train " + mixture_config("straight") + " train.steps=16").status, 0);
  const std::string half = mixture_config("resumed");
  ASSERT_EQ(run_mamba("train " + half + " train.steps=16 checkpoint.interval=8").status, 0);
  fs::remove_all(dir("resumed") + "/step_00000016");
  const auto r = run_mamba("train " + half + " train.steps=16");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(test::contains(r.output, "resumed from")) << r.output;
  EXPECT_EQ(bytes_of(dir("straight") + "/step_00000016/model.safetensors"),
            bytes_of(dir("resumed") + "/step_00000016/model.safetensors"));
  const json a = json::parse(bytes_of(dir("straight") + "/step_00000016/trainer.json"));
  const json b = json::parse(bytes_of(dir("resumed") + "/step_00000016/trainer.json"));
  EXPECT_EQ(a["loader"], b["loader"]);
  ASSERT_EQ(a["loader"]["sources"].size(), 2u);
  EXPECT_EQ(a["loader"]["sources"][0]["name"], "web");
  const auto x = records("straight", "source_tokens"), y = records("resumed", "source_tokens");
  ASSERT_EQ(x.size(), 16u);
  ASSERT_EQ(y.size(), 16u);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i]["source_tokens"], y[i]["source_tokens"]);
    EXPECT_EQ(x[i]["loss"], y[i]["loss"]);
  }
}

// 2 ranks of micro batch 2 == 1 process of micro batch 4: the same draws and losses.
TEST_F(MixtureRun, TwoRanksDrawWhatOneRankDraws) {
  ASSERT_EQ(run_mamba("train " + mixture_config("one_rank")).status, 0);
  const std::string cmd = test::mpirun(2) + MAMBA_BINARY + " train " + mixture_config("two_ranks") +
                          " train.micro_batch=2 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto x = records("one_rank", "source_tokens"), y = records("two_ranks", "source_tokens");
  ASSERT_EQ(x.size(), 8u);
  ASSERT_EQ(y.size(), 8u);
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i]["source_tokens"], y[i]["source_tokens"]);
    const double loss = x[i]["loss"];
    EXPECT_NEAR(y[i]["loss"].get<double>(), loss, 1e-5 * std::abs(loss)) << "step " << i + 1;
  }
}

TEST_F(MixtureRun, ResumeWithOtherSourcesIsRefused) {
  const std::string cfg = mixture_config("changed");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=4").status, 0);
  auto r = run_mamba("train " + cfg + " train.steps=8 data.train=" + glob("web", "train"));
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(test::contains(r.output, "was written by a run on the mixture [web, code]"))
      << r.output;
  const std::string renamed =
      mixture_config("renamed", "[{name: web, path: " + glob("web", "train") +
                                    "}, {name: books, path: " + glob("code", "train") + "}]");
  r = run_mamba("train " + renamed + " train.steps=8 checkpoint.dir=" + dir("changed"));
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(test::contains(r.output, "data.train is the mixture [web, books]")) << r.output;
}

TEST_F(MixtureRun, BadMixturesStopWithOneLine) {
  const std::string web = glob("web", "train"), code = glob("code", "train");
  fs::create_directories(root_ / "small_vocab");
  ShardInfo info;
  info.vocab_size = 200;
  info.eos_id = 0;
  info.tokenizer = "byte";
  info.split = "train";
  test::write_shard((root_ / "small_vocab" / "train-0000.h5").string(), info,
                    std::vector<int32_t>(100, 1));
  struct Case {
    std::string train, mentions;
  };
  const std::vector<Case> cases = {
      {"[{name: web, path: " + web + ", weight: 0}]", "data.train[0].weight = 0"},
      {"[{name: web, path: " + web + ", weight: .nan}]", "data.train[0].weight = .nan"},
      {"[{name: web, path: " + web + "}, {name: web, path: " + code + "}]",
       "data.train[1].name = web"},
      {"[{path: " + web + "}]", "missing key data.train[0].name"},
      {"[{name: web}]", "missing key data.train[0].path"},
      {"[{name: web, path: " + web + "}, {name: none, path: /nonexistent/x-*.h5}]",
       "/nonexistent/x-*.h5"},
      {"[{name: web, path: " + web + "}, {name: small, path: " + (root_ / "small_vocab").string() +
           "/train-*.h5}]",
       "source 'small'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.train);
    const auto r = run_mamba("train " + mixture_config("bad", c.train));
    EXPECT_NE(r.status, 0);
    EXPECT_TRUE(test::contains(r.output, c.mentions)) << r.output;
    // The error is the last line of the output, and it is one line.
    const std::string last = r.output.substr(r.output.rfind('\n', r.output.size() - 2) + 1);
    EXPECT_TRUE(test::contains(last, c.mentions)) << r.output;
  }
}

}  // namespace
}  // namespace mamba
