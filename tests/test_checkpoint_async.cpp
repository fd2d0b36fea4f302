// Asynchronous checkpoint saves (checkpoint.async, docs/reliability.md): what a background write
// leaves on disk is byte-for-byte what a synchronous save writes, the next save waits for it,
// SIGTERM and the end of the run wait for it, a NaN snapshot is refused, and a kill -9 in the
// middle of a background write resumes bit-exactly. MAMBA_TEST_SLOW_SAVE_MS slows the writer so
// that training visibly overlaps it and kills land inside it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "error_of.h"
#include "run_fixture.h"
#include "scratch.h"
#include "train/checkpoint_writer.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::contains;
using test::run_mamba;
using Clock = std::chrono::steady_clock;

const std::string kAsync = " checkpoint.async=true";

// A training command started in the background, its output in a file.
pid_t start(const std::string& command, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/bin/sh", "sh", "-c", ("exec " + command).c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

class AsyncCheckpoint : public test::RunFixture {
 protected:
  // trainer.json without the resolved config, which names checkpoint.async and the directory.
  static nlohmann::json trainer_state(const std::string& checkpoint) {
    auto j = nlohmann::json::parse(bytes_of(checkpoint + "/trainer.json"));
    j.erase("config");
    j.erase("crc32");
    return j;
  }

  static void expect_same_checkpoint(const std::string& a, const std::string& b) {
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
      EXPECT_EQ(bytes_of(a + "/" + file), bytes_of(b + "/" + file)) << a << " " << file;
    }
    EXPECT_EQ(trainer_state(a), trainer_state(b)) << a;
  }

  static bool any_tmp(const std::string& run) {
    for (const auto& e : fs::directory_iterator(dir(run))) {
      if (contains(e.path().filename().string(), ".tmp")) return true;
    }
    return false;
  }
};

TEST_F(AsyncCheckpoint, WritesWhatASynchronousSaveWrites) {
  const std::string settings = " train.steps=12 checkpoint.interval=4";
  const auto sync = run_mamba("train " + config("sync") + settings + " checkpoint.async=false");
  ASSERT_EQ(sync.status, 0) << sync.output;
  EXPECT_FALSE(contains(sync.output, "in the background")) << sync.output;
  const auto async = run_mamba("train " + config("async") + settings + kAsync);
  ASSERT_EQ(async.status, 0) << async.output;
  EXPECT_TRUE(contains(async.output, "step_00000012 (written in the background")) << async.output;
  for (const char* step : {"step_00000004", "step_00000008", "step_00000012"}) {
    expect_same_checkpoint(dir("async") + "/" + step, dir("sync") + "/" + step);
  }
  EXPECT_FALSE(any_tmp("async"));
}

// With a slow writer, training goes on while a checkpoint is written, the next save says that it
// waits, and the run's end waits for the last write.
TEST_F(AsyncCheckpoint, TrainingOverlapsTheWriteAndTheNextSaveWaits) {
  const std::string settings = " train.steps=6 checkpoint.interval=2";
  ASSERT_EQ(run_mamba("train " + config("reference") + settings + " checkpoint.async=false").status,
            0);
  setenv("MAMBA_TEST_SLOW_SAVE_MS", "10", 1);
  const auto r =
      run_mamba("train " + config("slow") + settings + " checkpoint.interval=1" + kAsync);
  unsetenv("MAMBA_TEST_SLOW_SAVE_MS");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "checkpoint step 2 waits for the previous checkpoint"))
      << r.output;
  // Step 2's log line comes before step 1's checkpoint is complete: training did not stop.
  const size_t step2 = r.output.find("step 2/6 |");
  const size_t written1 = r.output.find("step_00000001 (written in the background");
  ASSERT_NE(step2, std::string::npos) << r.output;
  ASSERT_NE(written1, std::string::npos) << r.output;
  EXPECT_LT(step2, written1) << r.output;
  EXPECT_FALSE(any_tmp("slow"));
  for (const char* step : {"step_00000002", "step_00000004", "step_00000006"}) {
    expect_same_checkpoint(dir("slow") + "/" + step, dir("reference") + "/" + step);
  }
}

TEST_F(AsyncCheckpoint, SigtermWaitsForTheWriteAndResumesExactly) {
  const std::string settings = " train.steps=30 checkpoint.interval=1000";
  ASSERT_EQ(run_mamba("train " + config("whole") + settings + " checkpoint.async=false").status, 0);
  const std::string cfg = config("preempted");
  setenv("MAMBA_TEST_SLOW_SAVE_MS", "20", 1);
  const pid_t pid = start(std::string(MAMBA_BINARY) + " train " + cfg + settings + kAsync,
                          dir("preempted") + ".log");
  unsetenv("MAMBA_TEST_SLOW_SAVE_MS");
  const std::string metrics = dir("preempted") + "/metrics.jsonl";
  for (int i = 0; i < 600 && lines(metrics).size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string log = bytes_of(dir("preempted") + ".log");
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_TRUE(contains(log, "(written in the background")) << log;
  EXPECT_TRUE(contains(log, "stopped by signal")) << log;
  EXPECT_FALSE(any_tmp("preempted")) << "the process exited before its write was complete";
  const auto r = run_mamba("train " + cfg + settings + kAsync);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "resumed from")) << r.output;
  expect_same_checkpoint(dir("preempted") + "/step_00000030", dir("whole") + "/step_00000030");
}

// A kill -9 while a background write is under way leaves a .tmp directory that resume ignores;
// the run then continues bit-exactly from the newest complete checkpoint.
TEST_F(AsyncCheckpoint, KillNineDuringBackgroundWritesResumesBitExactly) {
  const std::string settings = " train.steps=6 checkpoint.interval=1 checkpoint.keep_last=2";
  ASSERT_EQ(run_mamba("train " + config("unkilled") + settings + " checkpoint.async=false").status,
            0);
  setenv("MAMBA_TEST_SLOW_SAVE_MS", "5", 1);
  const auto t0 = Clock::now();
  ASSERT_EQ(run_mamba("train " + config("timing") + settings + kAsync).status, 0);
  const double run_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  Rng rng(11);
  int during_write = 0;
  constexpr int kTrials = 4;
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string name = "killed" + std::to_string(trial);
    const std::string cfg = config(name);
    const pid_t pid =
        start(std::string(MAMBA_BINARY) + " train " + cfg + settings + kAsync, dir(name) + ".log");
    // After start-up (a third of the run), so that most kills find a write in progress.
    std::this_thread::sleep_for(
        std::chrono::duration<double>(run_seconds * (0.3 + 0.6 * rng.uniform())));
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    std::error_code none_yet;
    for (const auto& e : fs::directory_iterator(dir(name), none_yet)) {
      if (contains(e.path().filename().string(), ".tmp")) ++during_write;
    }
    const auto r = run_mamba("train " + cfg + settings + kAsync);
    ASSERT_EQ(r.status, 0) << name << ": " << r.output;
    expect_same_checkpoint(dir(name) + "/step_00000006", dir("unkilled") + "/step_00000006");
  }
  unsetenv("MAMBA_TEST_SLOW_SAVE_MS");
  std::printf("%d of %d kills landed inside a background write\n", during_write, kTrials);
  EXPECT_GT(during_write, 0) << "no kill tested a half-written asynchronous checkpoint";
}

// A run that stops with an error names the checkpoint being written as the newest good one, and
// it is complete when the process has exited.
TEST_F(AsyncCheckpoint, RunStoppedByAnErrorFinishesTheWriteItNames) {
  setenv("MAMBA_TEST_NAN_STEPS", "5", 1);
  setenv("MAMBA_TEST_SLOW_SAVE_MS", "20", 1);
  const auto r = run_mamba("train " + config("nan_stop") + " train.on_nonfinite=stop" + kAsync);
  unsetenv("MAMBA_TEST_SLOW_SAVE_MS");
  unsetenv("MAMBA_TEST_NAN_STEPS");
  EXPECT_EQ(r.status, 2) << r.output;
  const std::string newest = dir("nan_stop") + "/step_00000004";
  EXPECT_TRUE(contains(r.output, "the newest good checkpoint is " + newest)) << r.output;
  EXPECT_TRUE(fs::exists(newest + "/trainer.json"));
  EXPECT_FALSE(any_tmp("nan_stop"));
}

TEST_F(AsyncCheckpoint, UnknownValueNamesTheKey) {
  const auto r = run_mamba("train " + config("badkey") + " checkpoint.async=maybe");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "checkpoint.async")) << r.output;
  EXPECT_TRUE(contains(r.output, "auto, true, false")) << r.output;
}

// ---- CheckpointWriter on its own, on the CPU backend ----

class CheckpointWriterTest : public test::ScratchDirTest {
 protected:
  const std::string& dir() const { return dir_; }
};

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Buffers {
  ModelConfig config;
  ParamLayout layout;
  std::vector<float> params, m, v;

  explicit Buffers(uint64_t seed) : config(small()), layout(config) {
    Rng rng(seed);
    for (auto* buffer : {&params, &m, &v}) {
      buffer->resize(layout.total());
      for (float& x : *buffer) x = float(rng.uniform());
    }
  }
  static ModelConfig small() {
    ModelConfig c;
    c.d_model = 16;
    c.n_layer = 2;
    c.vocab_size = 64;
    c.d_state = 4;
    return c;
  }
};

TEST_F(CheckpointWriterTest, BackgroundWriteLoadsBackAndMatchesTheSynchronousSave) {
  const auto backend = make_cpu_backend();
  Buffers model(5);
  TrainerState state;
  state.step = 7;
  state.rng = {1, 2, 3, 4};
  state.config_yaml = "x: 1\n";
  state.gemm_algorithms = "gemm-algorithms 1 cublasLt 130000 sm_90 NVIDIA H200\n1 2 3  a b\n";
  const std::string async_dir = dir() + "/async", sync_dir = dir() + "/sync";
  {
    CheckpointWriter writer(*backend, model.layout, async_dir, 0);
    EXPECT_EQ(writer.save(model.params.data(), model.m.data(), model.v.data(), 6, state),
              async_dir + "/step_00000007");
    // The snapshot is taken: changing the live buffers does not change what is written.
    std::fill(model.params.begin(), model.params.end(), 0.0f);
    writer.wait();
    EXPECT_EQ(writer.newest(), async_dir + "/step_00000007");
  }
  Buffers same(5);
  save_checkpoint(sync_dir, same.layout, TrainingTensors{same.params, same.m, same.v, 6}, state, 0);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer.json"}) {
    EXPECT_EQ(bytes_of(async_dir + "/step_00000007/" + file),
              bytes_of(sync_dir + "/step_00000007/" + file))
        << file;
  }
  TrainingTensors loaded;
  TrainerState loaded_state;
  load_checkpoint(async_dir + "/step_00000007", same.layout, loaded, loaded_state);
  EXPECT_EQ(loaded.params, same.params);
  EXPECT_EQ(loaded.exp_avg_sq, same.v);
  EXPECT_EQ(loaded.optimizer_steps, 6);
  EXPECT_EQ(loaded_state.gemm_algorithms, state.gemm_algorithms);
}

// A device without room for the snapshot: the save streams from the live buffers before it
// returns, and writes the same files.
TEST_F(CheckpointWriterTest, NoRoomForTheSnapshotSavesSynchronously) {
  const auto backend = make_cpu_backend();
  Buffers model(8);
  TrainerState state;
  state.step = 2;
  const std::string async_dir = dir() + "/fallback", sync_dir = dir() + "/sync";
  setenv("MAMBA_TEST_NO_SNAPSHOT_ROOM", "1", 1);
  {
    CheckpointWriter writer(*backend, model.layout, async_dir, 0);
    EXPECT_EQ(writer.save(model.params.data(), model.m.data(), model.v.data(), 2, state),
              async_dir + "/step_00000002");
    EXPECT_EQ(writer.newest(), async_dir + "/step_00000002") << "complete when save returns";
  }
  unsetenv("MAMBA_TEST_NO_SNAPSHOT_ROOM");
  save_checkpoint(sync_dir, model.layout, TrainingTensors{model.params, model.m, model.v, 2}, state,
                  0);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "trainer.json"}) {
    EXPECT_EQ(bytes_of(async_dir + "/step_00000002/" + file),
              bytes_of(sync_dir + "/step_00000002/" + file))
        << file;
  }
}

TEST_F(CheckpointWriterTest, NonFiniteSnapshotIsRefusedAndNothingIsWritten) {
  const auto backend = make_cpu_backend();
  Buffers model(6);
  model.v[model.v.size() / 2] = std::nanf("");
  TrainerState state;
  state.step = 3;
  CheckpointWriter writer(*backend, model.layout, dir(), 0);
  const std::string error = test::error_of(
      [&] { writer.save(model.params.data(), model.m.data(), model.v.data(), 3, state); });
  EXPECT_TRUE(contains(error, "of step 3 hold NaN or infinity; no checkpoint was written"))
      << error;
  writer.wait();
  EXPECT_TRUE(writer.newest().empty());
  EXPECT_FALSE(fs::exists(dir() + "/step_00000003"));
  EXPECT_FALSE(fs::exists(dir() + "/step_00000003.tmp"));
}

TEST_F(CheckpointWriterTest, WriteErrorSurfacesAtTheNextWait) {
  const auto backend = make_cpu_backend();
  Buffers model(7);
  TrainerState state;
  state.step = 1;
  // A file where the checkpoint directory should be: the background write cannot create it.
  const std::string blocked = dir() + "/not_a_directory";
  std::ofstream(blocked) << "x";
  CheckpointWriter writer(*backend, model.layout, blocked, 0);
  writer.save(model.params.data(), model.m.data(), model.v.data(), 1, state);
  const std::string error = test::error_of([&] { writer.wait(); });
  EXPECT_TRUE(contains(error, "checkpoint error: cannot create " + blocked)) << error;
  writer.wait();  // reported once
}

}  // namespace
}  // namespace mamba
