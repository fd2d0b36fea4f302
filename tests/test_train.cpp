// End-to-end training runs through the CLI: exact resume, preemption, half-written checkpoints,
// MPI data-parallel equivalence, and the one-line errors of bad configs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "data/shard.h"
#include "io/safetensors.h"
#include "kernels/backend.h"
#include "model/mamba_lm.h"
#include "mpirun.h"
#include "run_fixture.h"
#include "scratch.h"
#include "shard_fixtures.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;

// The fixture's corpus and config, plus a small training split whose epochs end every 6 steps.
class TrainRun : public test::RunFixture {
 protected:
  static void SetUpTestSuite() {
    RunFixture::SetUpTestSuite();
    // 24 windows of 16 tokens: an epoch is 6 steps of 4 samples.
    fs::create_directories(root_ / "small");
    write_corpus((root_ / "small" / "train-0000.h5").string(), "train", 24 * 16 + 1, 4);
  }

  static std::vector<float> weights(const std::string& checkpoint) {
    return tensors(checkpoint + "/model.safetensors");
  }

  // Lines "sample step N | TEXT" of a run's output, by step.
  static std::map<int, std::string> samples(const std::string& output) {
    std::map<int, std::string> found;
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("sample step ", 0) == 0) found[std::stoi(line.substr(12))] = line;
    }
    return found;
  }

  // "loss" of each training step in a metrics file, by step.
  static std::vector<std::string> train_losses(const std::string& metrics) {
    std::vector<std::string> losses;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("\"loss\":");
      if (at != std::string::npos) losses.push_back(line.substr(at, line.find(',', at) - at));
    }
    return losses;
  }
};

TEST_F(TrainRun, LossFallsAndValidationIsLogged) {
  const auto r = run_mamba("train " + config("basic") + " train.steps=24 optim.warmup=4");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("step 24/24 | loss"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("eval step 24 | val loss"), std::string::npos) << r.output;
  const auto losses = train_losses(dir("basic") + "/metrics.jsonl");
  ASSERT_EQ(losses.size(), 24u);
  EXPECT_LT(std::stod(losses.back().substr(7)), std::stod(losses.front().substr(7)) - 1.0);
}

// N steps straight == N/2 steps, a stop, N/2 resumed steps: bit-identical weights, optimizer
// state, losses and text samples. Two micro-batches per step, and a small data set whose epochs
// end at steps 6 and 12, so the resume lands inside the second epoch and the run crosses a third.
TEST_F(TrainRun, ResumeIsBitExact) {
  const std::string args = " data.train=" + (root_ / "small" / "train-*.h5").string() +
                           " train.steps=16 train.micro_batch=2 data.tokenizer=byte"
                           " log.sample_interval=2 log.sample_tokens=24";
  const auto straight = run_mamba("train " + config("straight") + args);
  ASSERT_EQ(straight.status, 0) << straight.output;
  const std::string half = config("resumed");
  ASSERT_EQ(run_mamba("train " + half + args + " train.steps=16 checkpoint.interval=8").status, 0);
  // Keep only the step-8 checkpoint: the run "stopped" there.
  fs::remove_all(dir("resumed") + "/step_00000016");
  const auto r = run_mamba("train " + half + args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("micro batch 2 x 2 accum"), std::string::npos) << r.output;
  expect_same_checkpoint_bytes("straight", "resumed", 16);
  // Loader position, sampling RNG, step, tokens and the files' checksums; the config differs in
  // its paths, and with it trainer.json's own checksum.
  nlohmann::json state[2];
  for (int k = 0; k < 2; ++k) {
    state[k] = nlohmann::json::parse(
        bytes_of(dir(k == 0 ? "straight" : "resumed") + "/step_00000016/trainer.json"));
    state[k].erase("config");
    state[k].erase("crc32");
  }
  EXPECT_EQ(state[0], state[1]);
  EXPECT_EQ(state[0].at("loader").at("epoch"), 2);
  // The resumed run dropped the first run's records of steps 9..16 and wrote its own: each step
  // appears once, with the loss of the straight run.
  const auto a = train_losses(dir("straight") + "/metrics.jsonl");
  const auto b = train_losses(dir("resumed") + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  const auto expected = samples(straight.output), resumed = samples(r.output);
  ASSERT_EQ(expected.size(), 8u) << straight.output;
  ASSERT_EQ(resumed.size(), 4u) << r.output;
  for (int step : {10, 12, 14, 16}) EXPECT_EQ(expected.at(step), resumed.at(step));
}

// SIGTERM: the run finishes its step, writes a checkpoint, exits 0; resuming reaches the same
// weights as an uninterrupted run.
TEST_F(TrainRun, SigtermCheckpointsAndResumesExactly) {
  ASSERT_EQ(run_mamba("train " + config("uninterrupted") + " train.steps=40").status, 0);
  const std::string cfg = config("preempted");
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string out = dir("preempted") + ".log";
    freopen(out.c_str(), "w", stdout);
    execl(MAMBA_BINARY, MAMBA_BINARY, "train", cfg.c_str(), "train.steps=40", nullptr);
    _exit(127);
  }
  // Signal once training is under way (the metrics file has a line).
  const std::string metrics = dir("preempted") + "/metrics.jsonl";
  for (int i = 0; i < 600 && train_losses(metrics).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  const size_t stopped_at = train_losses(metrics).size();
  EXPECT_LT(stopped_at, 40u) << "the run ended before the signal arrived";
  const auto r = run_mamba("train " + cfg + " train.steps=40");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(bytes_of(dir("uninterrupted") + "/step_00000040/model.safetensors"),
            bytes_of(dir("preempted") + "/step_00000040/model.safetensors"));
}

// train.tune_gemms on a GPU: the checkpoint records the GEMM algorithms that timing chose, and a
// run resumed from it computes with them (timing again could choose others), so it ends with the
// bytes of the run that wrote it.
TEST_F(TrainRun, TunedGemmsResumeBitExactlyOnAGpu) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device (or a build without CUDA)";
  const std::string cfg = config("tuned");
  const std::string args =
      " train.device=cuda train.precision=bf16 train.tune_gemms=true model.d_model=256"
      " model.d_state=16 data.seq_len=256 train.steps=8 checkpoint.interval=4";
  ASSERT_EQ(run_mamba("train " + cfg + args).status, 0);
  const auto state = nlohmann::json::parse(bytes_of(dir("tuned") + "/step_00000004/trainer.json"));
  EXPECT_NE(state.value("gemm_algorithms", ""), "") << "the checkpoint holds no GEMM choices";
  const std::string step8 = dir("tuned") + "/step_00000008";
  const std::string weights = bytes_of(step8 + "/model.safetensors");
  const std::string moments = bytes_of(step8 + "/optimizer.safetensors");
  fs::remove_all(step8);
  const auto r = run_mamba("train " + cfg + args);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resumed from"), std::string::npos) << r.output;
  EXPECT_EQ(bytes_of(step8 + "/model.safetensors"), weights);
  EXPECT_EQ(bytes_of(step8 + "/optimizer.safetensors"), moments);
}

TEST_F(TrainRun, HalfWrittenCheckpointIsIgnored) {
  const std::string cfg = config("torn");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=4").status, 0);
  // A run killed while writing step 8 leaves its .tmp directory (with a partial file).
  fs::create_directories(dir("torn") + "/step_00000008.tmp");
  std::ofstream(dir("torn") + "/step_00000008.tmp/model.safetensors") << "partial";
  const auto r = run_mamba("train " + cfg);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("step_00000004 at step 4"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir("torn") + "/step_00000008/trainer.json"));
}

// Gradient accumulation: micro batch 2 x 2 accumulation steps == micro batch 4 in one pass, the
// loss and the pre-clip gradient norm of every step and the final weights. Clipping is off so
// that the gradient's scale reaches the weights.
TEST_F(TrainRun, AccumulationMatchesOneBigMicroBatch) {
  ASSERT_EQ(run_mamba("train " + config("big_micro") + " optim.clip=0").status, 0);
  const auto r = run_mamba("train " + config("accumulated") + " optim.clip=0 train.micro_batch=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("micro batch 2 x 2 accum"), std::string::npos) << r.output;
  expect_same_steps("big_micro", "accumulated", 1e-5);
  EXPECT_LT(relative_difference(weights(dir("accumulated") + "/step_00000008"),
                                weights(dir("big_micro") + "/step_00000008")),
            1e-5);
}

// mpirun -np 2 with micro batch 1 and 2 accumulation steps == one process with micro batch 4.
TEST_F(TrainRun, TwoRanksWithAccumulationMatchOneRank) {
  ASSERT_EQ(run_mamba("train " + config("one_rank")).status, 0);
  const std::string cmd = test::mpirun(2) + MAMBA_BINARY + " train " + config("two_ranks") +
                          " train.micro_batch=1 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  expect_same_steps("one_rank", "two_ranks", 1e-5);
  EXPECT_LT(relative_difference(weights(dir("two_ranks") + "/step_00000008"),
                                weights(dir("one_rank") + "/step_00000008")),
            1e-5);
}

// A run checkpointed with 2 ranks resumes on 1 and sees the same data as a 1-rank run.
TEST_F(TrainRun, ResumeOnOtherProcessCountContinuesSameData) {
  ASSERT_EQ(run_mamba("train " + config("reference")).status, 0);
  const std::string cfg = config("switch");
  const std::string cmd =
      test::mpirun(2) + MAMBA_BINARY + " train " + cfg + " train.micro_batch=2 train.steps=8 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  fs::remove_all(dir("switch") + "/step_00000008");
  const auto r = run_mamba("train " + cfg);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_LT(relative_difference(weights(dir("switch") + "/step_00000008"),
                                weights(dir("reference") + "/step_00000008")),
            1e-6);
}

struct BadInput {
  const char* name;
  std::string args;
  const char* expect;
};

TEST_F(TrainRun, BadInputGetsOneLineError) {
  const std::string cfg = config("bad");
  const std::string malformed = (root_ / "bad" / "malformed.yaml").string();
  std::ofstream(malformed) << "model: {d_model: 16\ntrain: [\n";
  const std::vector<BadInput> cases = {
      {"malformed yaml", malformed, "malformed.yaml"},
      {"unknown key", cfg + " train.micro_bach=2", "micro_batch"},
      {"negative lr", cfg + " optim.lr=-1", "optim.lr"},
      {"micro batch not dividing global", cfg + " train.micro_batch=3", "global_batch"},
      {"missing data", cfg + " data.train=/nonexistent/train-*.h5", "/nonexistent/train-*.h5"},
      {"unwritable checkpoint dir", cfg + " checkpoint.dir=/proc/mamba_ckpt", "/proc/mamba_ckpt"},
  };
  for (const BadInput& c : cases) {
    const auto r = run_mamba("train " + c.args);
    EXPECT_NE(r.status, 0) << c.name;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.name << ": " << r.output;
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << c.name << ": " << r.output;
  }
}

TEST_F(TrainRun, CheckpointOfAnotherShapeIsRefused) {
  const std::string cfg = config("shape");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=4").status, 0);
  const auto r = run_mamba("train " + cfg + " model.d_model=32");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("d_model=16"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("d_model=32"), std::string::npos) << r.output;
}

// eval reproduces the validation loss the run logged at its last step (same windows, weights read
// back from the checkpoint); greedy generate equals greedy decoding by the full forward pass.
TEST_F(TrainRun, EvalAndGenerateFromCheckpoint) {
  const std::string cfg = config("infer");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=8 data.tokenizer=byte").status, 0);
  const auto e = run_mamba("eval " + dir("infer"));
  ASSERT_EQ(e.status, 0) << e.output;
  const nlohmann::json result = nlohmann::json::parse(e.output);
  const std::vector<double> logged = metric("infer", "val_loss");
  ASSERT_EQ(logged.size(), 3u);  // steps 0, 4 and 8
  EXPECT_NEAR(result.at("val_loss").get<double>(), logged.back(), 1e-5);
  EXPECT_LT(logged.back(), logged.front() - 0.5);  // the checkpoint holds trained weights
  EXPECT_EQ(result.at("tokens").get<int>(), 2 * 4 * 16);

  const auto g = run_mamba("generate " + dir("infer") +
                           " --prompt 'the ' --tokens 12 --temperature 0 --seed 1");
  ASSERT_EQ(g.status, 0) << g.output;
  const std::string ckpt = dir("infer") + "/step_00000008";
  const ModelConfig model_config = checkpoint_model_config(ckpt);
  const auto backend = make_cpu_backend();
  MambaLM model(model_config, *backend);
  std::vector<float> params(model.layout().total());
  load_checkpoint_weights(ckpt, model.layout(), params.data());
  model.upload_params(params);
  std::vector<int32_t> tokens{'t', 'h', 'e', ' '};
  std::string expected = "the ";
  const int vp = model_config.padded_vocab();
  for (int i = 0; i < 12; ++i) {
    const int n = int(tokens.size());
    std::vector<float> logits(size_t(n) * vp);
    model.evaluate(tokens.data(), tokens.data(), 1, n, logits.data());
    const float* last = logits.data() + size_t(n - 1) * vp;
    const int32_t next = int32_t(std::max_element(last, last + 257) - last);
    if (next == 256) break;
    tokens.push_back(next);
    expected += char(next);
  }
  EXPECT_EQ(g.output, expected + "\n");
  EXPECT_GT(expected.size(), 4u);
}

// model.vocab_size: auto takes the training shards' vocabulary, and a checkpoint records the
// number.
TEST_F(TrainRun, VocabSizeAutoComesFromTheShards) {
  const auto r =
      run_mamba("train " + config("vocab_auto") + " model.vocab_size=auto train.steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("vocab_size=257 (padded 264)"), std::string::npos) << r.output;
  EXPECT_EQ(checkpoint_experiment_config(dir("vocab_auto") + "/step_00000002").model.vocab_size,
            257);
  const auto none = run_mamba("train " + config("vocab_none") +
                              " model.vocab_size=auto data.train=/nonexistent/train-*.h5");
  EXPECT_EQ(none.status, 2) << none.output;
  EXPECT_NE(none.output.find("model.vocab_size = auto"), std::string::npos) << none.output;
}

}  // namespace
}  // namespace mamba
