// What a long run relies on (docs/reliability.md): it never trains on NaN, never trusts a damaged
// checkpoint, never shares its directory, never hangs when a rank fails, and survives kill -9 at
// any moment. Each test runs real training jobs through the CLI.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "mpirun.h"
#include "run_fixture.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::run_mamba;
using Clock = std::chrono::steady_clock;

// A command started in the background through the shell, its output in a file.
class Background {
 public:
  Background(const std::string& command, const std::string& log) {
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);  // its own process group, so that a kill reaches mpirun's children too
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), nullptr);
      _exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0 && !done_) {
      killpg(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void signal(int sig) const { kill(pid_, sig); }
  // The exit status, or -1 if it was killed or did not end within `seconds`.
  int wait(double seconds) {
    const auto start = Clock::now();
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::duration<double>(Clock::now() - start).count() > seconds) return -2;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    done_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  bool done_ = false;
};

bool wait_for(const std::function<bool()>& condition, double seconds) {
  const auto start = Clock::now();
  while (!condition()) {
    if (std::chrono::duration<double>(Clock::now() - start).count() > seconds) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class Reliability : public test::RunFixture {
 protected:
  static std::vector<fs::path> checkpoints(const std::string& run) {
    std::vector<fs::path> found;
    for (const auto& e : fs::directory_iterator(dir(run))) {
      if (e.path().filename().string().rfind("step_", 0) == 0) found.push_back(e.path());
    }
    std::sort(found.begin(), found.end());
    return found;
  }

  // Flips one byte in the middle of a file.
  static void flip_byte(const std::string& path) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff middle = f.tellg() / 2;
    f.seekg(middle);
    char c = 0;
    f.read(&c, 1);
    c = char(c ^ 0x10);
    f.seekp(middle);
    f.write(&c, 1);
  }
};

// ---- the non-finite guard ----

TEST_F(Reliability, NonFiniteStepIsSkippedAndTrainingGoesOn) {
  const std::string cfg = config("skip");
  setenv("MAMBA_TEST_NAN_STEPS", "3,6", 1);
  const auto r = run_mamba("train " + cfg);
  unsetenv("MAMBA_TEST_NAN_STEPS");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "step 3: loss")) << r.output;
  EXPECT_TRUE(contains(r.output, "step 6: loss")) << r.output;
  int skipped = 0;
  int64_t last_count = 0;
  for (const std::string& line : lines(dir("skip") + "/metrics.jsonl")) {
    const auto j = nlohmann::json::parse(line);
    if (j.value("skipped", false)) ++skipped;
    if (j.contains("skipped_steps")) last_count = j["skipped_steps"].get<int64_t>();
  }
  EXPECT_EQ(skipped, 2);
  EXPECT_EQ(last_count, 2);
  // A skipped step leaves the weights alone: step 3's update never happened, so a run whose
  // step 3 was skipped differs from a clean one.
  ASSERT_EQ(run_mamba("train " + config("clean")).status, 0);
  EXPECT_NE(bytes_of(dir("skip") + "/step_00000008/model.safetensors"),
            bytes_of(dir("clean") + "/step_00000008/model.safetensors"));
  const SafetensorsReader optimizer(dir("skip") + "/step_00000008/optimizer.safetensors");
  EXPECT_EQ(optimizer.metadata().at("steps_taken"), "6");
  EXPECT_TRUE(all_finite(tensors(dir("skip") + "/step_00000008/model.safetensors")));
  EXPECT_TRUE(all_finite(tensors(dir("skip") + "/step_00000008/optimizer.safetensors")));
}

TEST_F(Reliability, DivergingRunStopsAfterMaxSkippedStepsWithoutNanCheckpoint) {
  const std::string cfg = config("diverge");
  const auto r = run_mamba("train " + cfg +
                           " optim.lr=1000 optim.warmup=0 train.steps=40 checkpoint.interval=1 "
                           "checkpoint.keep_last=2 train.max_skipped_steps=3");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "train.max_skipped_steps = 3")) << r.output;
  EXPECT_TRUE(contains(r.output, "newest good checkpoint is " + dir("diverge") + "/step_"))
      << r.output;
  const auto all = checkpoints("diverge");
  ASSERT_FALSE(all.empty());
  for (const fs::path& c : all) {
    EXPECT_TRUE(all_finite(tensors((c / "model.safetensors").string()))) << c;
    EXPECT_TRUE(all_finite(tensors((c / "optimizer.safetensors").string()))) << c;
  }
}

TEST_F(Reliability, OnNonFiniteStopEndsTheRunAtThatStep) {
  const std::string cfg = config("stop");
  setenv("MAMBA_TEST_NAN_STEPS", "6", 1);
  const auto r = run_mamba("train " + cfg + " train.on_nonfinite=stop");
  unsetenv("MAMBA_TEST_NAN_STEPS");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "step 6 has loss")) << r.output;
  EXPECT_TRUE(contains(r.output, dir("stop") + "/step_00000004")) << r.output;
  EXPECT_FALSE(fs::exists(dir("stop") + "/step_00000008"));
}

TEST_F(Reliability, RanksAgreeToSkip) {
  const std::string cfg = config("skip_mpi");
  // Only rank 0's gradients are poisoned; the all-reduce carries the NaN to rank 1.
  const int rc = std::system(("MAMBA_TEST_NAN_STEPS=3 " + test::mpirun(2) +
                              "-x MAMBA_TEST_NAN_STEPS " + MAMBA_BINARY + " train " + cfg +
                              " train.micro_batch=2 > " + dir("skip_mpi") + ".log 2>&1")
                                 .c_str());
  const std::string log = bytes_of(dir("skip_mpi") + ".log");
  ASSERT_EQ(rc, 0) << log;
  EXPECT_TRUE(contains(log, "step 3: loss")) << log;
  EXPECT_TRUE(all_finite(tensors(dir("skip_mpi") + "/step_00000008/model.safetensors")));
}

// ---- integrity ----

TEST_F(Reliability, DamagedNewestCheckpointFallsBackAndIsSetAside) {
  ASSERT_EQ(run_mamba("train " + config("straight") + " train.steps=12").status, 0);
  const std::string cfg = config("damaged");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=12").status, 0);
  fs::remove_all(dir("damaged") + "/step_00000012");
  flip_byte(dir("damaged") + "/step_00000008/model.safetensors");
  const auto r = run_mamba("train " + cfg + " train.steps=12");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(
      r.output, "warning: skipping the damaged checkpoint " + dir("damaged") + "/step_00000008"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "fails its checksum")) << r.output;
  EXPECT_TRUE(contains(r.output, "resumed from " + dir("damaged") + "/step_00000004")) << r.output;
  EXPECT_TRUE(fs::exists(dir("damaged") + "/step_00000008.corrupt/model.safetensors"));
  // Resumed from step 4, it reaches the same weights as the run that was never damaged.
  EXPECT_EQ(bytes_of(dir("damaged") + "/step_00000012/model.safetensors"),
            bytes_of(dir("straight") + "/step_00000012/model.safetensors"));
}

TEST_F(Reliability, ExplicitResumeOfDamagedCheckpointIsAnError) {
  const std::string cfg = config("explicit");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  const std::string ckpt = dir("explicit") + "/step_00000008";
  flip_byte(ckpt + "/optimizer.safetensors");
  const auto r = run_mamba("train " + cfg + " train.steps=12 checkpoint.resume=" + ckpt);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, ckpt + "/optimizer.safetensors fails its checksum")) << r.output;
  EXPECT_TRUE(fs::exists(ckpt)) << "an explicit checkpoint is never moved";
  const auto e = run_mamba("eval " + ckpt);
  EXPECT_EQ(e.status, 0) << "the model file is intact: " << e.output;
  flip_byte(ckpt + "/model.safetensors");
  const auto damaged = run_mamba("eval " + ckpt);
  EXPECT_EQ(damaged.status, 2) << damaged.output;
  EXPECT_TRUE(contains(damaged.output, ckpt + "/model.safetensors fails its checksum"))
      << damaged.output;
}

TEST_F(Reliability, EditedTrainerStateFailsItsChecksum) {
  const std::string cfg = config("edited");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  const std::string file = dir("edited") + "/step_00000008/trainer.json";
  std::string text = bytes_of(file);
  text.replace(text.find("\"step\": 8"), 9, "\"step\": 9");
  std::ofstream(file) << text;
  const auto r = run_mamba("train " + cfg + " train.steps=12");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, file + " fails its checksum")) << r.output;
  EXPECT_TRUE(contains(r.output, "resumed from " + dir("edited") + "/step_00000004")) << r.output;
}

// Checkpoints written before checksums existed load with a warning, and their fields are still
// range-checked with errors naming the file (they once gave "internal error: stoi").
TEST_F(Reliability, UncheckedFieldsAreValidated) {
  const std::string cfg = config("legacy");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  const std::string ckpt = dir("legacy") + "/step_00000008";
  auto j = nlohmann::json::parse(bytes_of(ckpt + "/trainer.json"));
  j.erase("crc32");
  j.erase("files");
  std::ofstream(ckpt + "/trainer.json") << j.dump(2);
  const auto ok = run_mamba("train " + cfg + " train.steps=9 checkpoint.resume=" + ckpt);
  ASSERT_EQ(ok.status, 0) << ok.output;
  EXPECT_TRUE(contains(ok.output, "has no checksums")) << ok.output;

  j["step"] = -5;
  std::ofstream(ckpt + "/trainer.json") << j.dump(2);
  const auto bad = run_mamba("train " + cfg + " train.steps=9 checkpoint.resume=" + ckpt);
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_TRUE(contains(bad.output, ckpt + "/trainer.json holds step = -5, out of range"))
      << bad.output;
  for (const auto& e : fs::directory_iterator(dir("legacy"))) {
    EXPECT_FALSE(contains(e.path().filename().string(), "-")) << e.path();
  }
}

// Re-running a step that has a checkpoint replaces it whole, never leaving the step without one.
TEST_F(Reliability, ResavingAStepReplacesItsCheckpoint) {
  const std::string cfg = config("resave");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  const std::string first = bytes_of(dir("resave") + "/step_00000008/model.safetensors");
  const auto r = run_mamba("train " + cfg + " optim.lr=2.0e-2 checkpoint.resume=" + dir("resave") +
                           "/step_00000004");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string second = bytes_of(dir("resave") + "/step_00000008/model.safetensors");
  EXPECT_NE(first, second);
  for (const auto& e : fs::directory_iterator(dir("resave"))) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "step_00000004" || name == "step_00000008" || name == "metrics.jsonl" ||
                name == ".lock")
        << name;
  }
}

// ---- one run per directory ----

TEST_F(Reliability, SecondRunOnTheSameDirectoryIsRefused) {
  const std::string cfg = config("locked");
  Background first(std::string(MAMBA_BINARY) + " train " + cfg + " train.steps=100000",
                   dir("locked") + ".first.log");
  ASSERT_TRUE(wait_for([&] { return fs::exists(dir("locked") + "/metrics.jsonl"); }, 60));
  const auto second = run_mamba("train " + cfg);
  EXPECT_EQ(second.status, 2) << second.output;
  EXPECT_TRUE(contains(second.output, "checkpoint.dir " + dir("locked") + " is in use"))
      << second.output;
  EXPECT_TRUE(contains(second.output, "pid " + std::to_string(first.pid()))) << second.output;
  // A holder killed with -9 leaves the lock file, but not the lock.
  first.signal(SIGKILL);
  EXPECT_EQ(first.wait(30), -1);
  const auto third = run_mamba("train " + cfg);
  EXPECT_EQ(third.status, 0) << third.output;
}

// ---- failures that must not hang ----

// Rank ids of the processes whose environment holds `marker`.
std::vector<std::pair<int, pid_t>> ranks_with(const std::string& marker) {
  std::vector<std::pair<int, pid_t>> found;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "environ", std::ios::binary);
    const std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto rank_at = env.find("OMPI_COMM_WORLD_RANK=");
    if (!contains(env, marker) || rank_at == std::string::npos) continue;
    found.emplace_back(std::atoi(env.c_str() + rank_at + 21), pid_t(std::stoi(name)));
  }
  return found;
}

TEST_F(Reliability, StoppedRankEndsTheJobWithinTheTimeout) {
  const std::string cfg = config("sigstop");
  const std::string marker = "MAMBA_TEST_MARK=sigstop" + std::to_string(getpid());
  Background job("env " + marker + " " + test::mpirun(2) + "-x MAMBA_TEST_MARK " + MAMBA_BINARY +
                     " train " + cfg + " train.micro_batch=2 train.steps=100000 dist.timeout_s=3",
                 dir("sigstop") + ".log");
  ASSERT_TRUE(wait_for([&] { return lines(dir("sigstop") + "/metrics.jsonl").size() > 3; }, 60));
  pid_t rank1 = -1;
  for (const auto& [rank, pid] : ranks_with(marker)) {
    if (rank == 1) rank1 = pid;
  }
  ASSERT_GT(rank1, 0);
  kill(rank1, SIGSTOP);
  const auto start = Clock::now();
  const int status = job.wait(60);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  kill(rank1, SIGKILL);
  const std::string log = bytes_of(dir("sigstop") + ".log");
  EXPECT_NE(status, 0) << log;
  EXPECT_NE(status, -2) << "the job hung: " << log;
  EXPECT_LT(seconds, 30.0) << log;
  EXPECT_TRUE(contains(log, "did not finish within 3 s (dist.timeout_s)")) << log;
}

TEST_F(Reliability, Bf16GradientsWithoutNcclAreRefused) {
  const std::string cfg = config("bf16_mpi");
  const int rc =
      std::system((test::mpirun(2) + MAMBA_BINARY + " train " + cfg +
                   " train.micro_batch=2 dist.bf16_grads=true > " + dir("bf16_mpi") + ".log 2>&1")
                      .c_str());
  const std::string log = bytes_of(dir("bf16_mpi") + ".log");
  EXPECT_NE(rc, 0) << log;
  EXPECT_TRUE(contains(log, "dist.bf16_grads = true")) << log;
}

// ---- kill -9 at random moments ----

TEST_F(Reliability, KillNineAtRandomMomentsResumesBitExactly) {
  const std::string settings = " train.steps=12 checkpoint.interval=1 checkpoint.keep_last=2";
  const auto t0 = Clock::now();
  ASSERT_EQ(run_mamba("train " + config("unkilled") + settings).status, 0);
  const double run_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::string reference = dir("unkilled") + "/step_00000012/";
  Rng rng(7);
  int during_write = 0;
  constexpr int kTrials = 12;
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string name = "killed" + std::to_string(trial);
    const std::string cfg = config(name);
    {
      Background run(std::string(MAMBA_BINARY) + " train " + cfg + settings, dir(name) + ".log");
      std::this_thread::sleep_for(std::chrono::duration<double>(run_seconds * rng.uniform()));
      run.signal(SIGKILL);
      run.wait(30);
    }
    std::error_code none_yet;  // a kill before the run made its directory
    for (const auto& e : fs::directory_iterator(dir(name), none_yet)) {
      if (contains(e.path().filename().string(), ".tmp")) ++during_write;
    }
    const auto r = run_mamba("train " + cfg + settings);
    ASSERT_EQ(r.status, 0) << name << ": " << r.output;
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
      EXPECT_EQ(bytes_of(dir(name) + "/step_00000012/" + file), bytes_of(reference + file))
          << name << " " << file;
    }
    // Each step's record appears once, however often the run was killed and resumed.
    std::vector<int64_t> steps;
    for (const std::string& line : lines(dir(name) + "/metrics.jsonl")) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) steps.push_back(j["step"].get<int64_t>());
    }
    std::vector<int64_t> expected(12);
    for (int s = 0; s < 12; ++s) expected[s] = s + 1;
    EXPECT_EQ(steps, expected) << name;
  }
  std::printf("%d of %d kills left a checkpoint half-written\n", during_write, kTrials);
}

// ---- values that once crashed or lost work ----

struct BadValue {
  std::string overrides;
  std::string expect;  // the key the one-line error must name
};

TEST_F(Reliability, BadValuesAreRefusedUpFront) {
  const std::string cfg = config("values");
  const std::vector<BadValue> cases = {
      {"model.pad_vocab_multiple=2147483647", "model.pad_vocab_multiple"},
      {"train.grad_accum=1e9 train.global_batch=null", "train.grad_accum"},
      {"train.micro_batch=2e9 train.global_batch=null", "train.micro_batch"},
      {"model.d_state=1e6", "model.d_state"},
      {"model.norm_eps=1e30", "model.norm_eps"},
      {"model.dt_rank=100000", "model.dt_rank"},
      {"optim.weight_decay=1e6", "optim.weight_decay"},
      {"checkpoint.dir=" + dir("values") + "/\xff\xfe", "checkpoint.dir"},
      {"log.sample_prompt=caf\xe9", "log.sample_prompt"},
  };
  for (const BadValue& c : cases) {
    const auto r = run_mamba("train " + cfg + " '" + c.overrides + "'");
    EXPECT_EQ(r.status, 2) << c.overrides << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "config error: " + c.expect)) << c.overrides << ": " << r.output;
    EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << c.overrides << ": " << r.output;
  }
  EXPECT_FALSE(fs::exists(dir("values"))) << "nothing was written";
}

// In range, but far more than the machine has: an error before any work, not an OOM kill.
TEST_F(Reliability, ModelTooLargeForMemoryFailsAtOnce) {
  const auto start = Clock::now();
  const auto r = run_mamba("train " + config("huge") +
                           " model.d_model=65536 model.n_layer=4096 model.d_state=1024");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "out of memory")) << r.output;
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 20.0);
}

TEST_F(Reliability, SigtermDuringALongEvaluationIsHonoured) {
  const std::string cfg = config("long_eval");
  Background run(std::string(MAMBA_BINARY) + " train " + cfg + " log.eval_batches=1000000000",
                 dir("long_eval") + ".log");
  ASSERT_TRUE(
      wait_for([&] { return contains(bytes_of(dir("long_eval") + ".log"), "model:"); }, 60));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  run.signal(SIGTERM);
  const int status = run.wait(30);
  const std::string log = bytes_of(dir("long_eval") + ".log");
  EXPECT_EQ(status, 0) << log;
  EXPECT_TRUE(contains(log, "stopped by signal")) << log;
}

TEST_F(Reliability, MetricsWriteErrorStopsTheRun) {
  const auto r = run_mamba("train " + config("full_disk") + " log.metrics=/dev/full");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot write to log.metrics = /dev/full")) << r.output;
}

TEST_F(Reliability, CliNumbersAreRangeChecked) {
  const std::string cfg = config("cli");
  ASSERT_EQ(run_mamba("train " + cfg + " data.tokenizer=byte").status, 0);
  const std::string ckpt = dir("cli");
  for (const std::string& args :
       {"eval " + ckpt + " --batches -1", "eval " + ckpt + " --batches 0",
        "generate " + ckpt + " --tokens -5", "generate " + ckpt + " --temperature nan",
        "generate " + ckpt + " --top-k -1"}) {
    const auto r = run_mamba(args);
    EXPECT_EQ(r.status, 2) << args << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "expected")) << args << ": " << r.output;
  }
  const auto e = run_mamba("eval " + ckpt + " --batches 2");
  ASSERT_EQ(e.status, 0) << e.output;
  const auto j = nlohmann::json::parse(e.output);
  EXPECT_TRUE(j["val_loss"].is_number()) << e.output;
}

// A resume streams each file into the device buffers before its checksum is known: when every
// checkpoint turns out damaged, nothing they left behind may survive into the fresh start.
TEST_F(Reliability, AllCheckpointsDamagedStartsExactlyLikeAFreshRun) {
  ASSERT_EQ(run_mamba("train " + config("fresh_reference")).status, 0);
  const std::string cfg = config("all_damaged");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  for (const char* step : {"/step_00000004", "/step_00000008"}) {
    flip_byte(dir("all_damaged") + step + "/optimizer.safetensors");
  }
  const auto r = run_mamba("train " + cfg);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(contains(r.output, "resumed from")) << r.output;
  EXPECT_TRUE(fs::exists(dir("all_damaged") + "/step_00000004.corrupt"));
  EXPECT_TRUE(fs::exists(dir("all_damaged") + "/step_00000008.corrupt"));
  expect_same_checkpoint_bytes("all_damaged", "fresh_reference", 8);
}

// A resume judges a file's header before its checksum is known: a damaged header that reads as
// another model's is still a damaged checkpoint, set aside for the older one.
TEST_F(Reliability, DamagedHeaderFallsBackInsteadOfStopping) {
  const std::string cfg = config("header");
  ASSERT_EQ(run_mamba("train " + cfg).status, 0);
  const std::string file = dir("header") + "/step_00000008/model.safetensors";
  std::string bytes = bytes_of(file);
  const size_t at = bytes.find("\"d_model\":\"16\"");
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, 14, "\"d_model\":\"32\"");
  std::ofstream(file, std::ios::binary) << bytes;
  const auto r = run_mamba("train " + cfg + " train.steps=12");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "fails its checksum")) << r.output;
  EXPECT_TRUE(contains(r.output, "resumed from " + dir("header") + "/step_00000004")) << r.output;
}

}  // namespace
}  // namespace mamba
