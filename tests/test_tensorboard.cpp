// TensorBoard event files: the TFRecord framing is checked against a CRC-32C written here from
// its definition (bit by bit, reflected polynomial 0x82F63B78), the Events are decoded with the
// generated classes, and a training run's file holds what its metrics file holds.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "error_of.h"
#include "run_fixture.h"
#include "scratch.h"
#include "tensorboard_event.pb.h"
#include "train/tensorboard.h"
#include "train/tfrecord.h"
#include "util/rng.h"

namespace mamba {
namespace {

namespace fs = std::filesystem;
using test::run_mamba;

uint32_t reference_crc32c(const std::string& bytes) {
  uint32_t crc = 0xffffffffu;
  for (unsigned char byte : bytes) {
    crc ^= byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

uint32_t reference_masked(const std::string& bytes) {
  const uint32_t crc = reference_crc32c(bytes);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

uint64_t little_endian(const std::string& bytes) {
  uint64_t value = 0;
  for (size_t i = bytes.size(); i-- > 0;) value = (value << 8) | uint8_t(bytes[i]);
  return value;
}

// Every Event of an event file; fails the test at the first record whose framing is wrong.
std::vector<tensorboard::Event> read_events(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<tensorboard::Event> events;
  size_t at = 0;
  while (at < file.size()) {
    if (file.size() - at < 12) {
      ADD_FAILURE() << path << ": torn header at byte " << at;
      break;
    }
    const std::string header = file.substr(at, 8);
    const uint64_t length = little_endian(header);
    if (little_endian(file.substr(at + 8, 4)) != reference_masked(header) ||
        file.size() - at - 12 < length + 4) {
      ADD_FAILURE() << path << ": bad length record at byte " << at;
      break;
    }
    const std::string data = file.substr(at + 12, length);
    if (little_endian(file.substr(at + 12 + length, 4)) != reference_masked(data)) {
      ADD_FAILURE() << path << ": bad data CRC at byte " << at;
      break;
    }
    tensorboard::Event event;
    if (!event.ParseFromString(data)) {
      ADD_FAILURE() << path << ": record at byte " << at << " is not an Event";
      break;
    }
    events.push_back(event);
    at += 16 + length;
  }
  return events;
}

// The one event file in `dir`.
std::string event_file(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) found.push_back(e.path().string());
  EXPECT_EQ(found.size(), 1u) << dir;
  return found.empty() ? "" : found[0];
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

TEST(TfRecord, Crc32cMatchesItsDefinition) {
  EXPECT_EQ(reference_crc32c("123456789"), 0xe3069283u);  // the published check value
  EXPECT_EQ(crc32c("123456789", 9), 0xe3069283u);
  Rng rng(7);
  for (size_t n : {0, 1, 7, 8, 15, 64, 1000, 4099}) {
    std::string bytes(n, '\0');
    for (char& c : bytes) c = char(rng.below(256));
    EXPECT_EQ(crc32c(bytes.data(), bytes.size()), reference_crc32c(bytes)) << n << " bytes";
    EXPECT_EQ(masked_crc32c(bytes.data(), bytes.size()), reference_masked(bytes)) << n;
  }
}

TEST(TfRecord, FramesLengthDataAndTheirCrcs) {
  const std::string data = "a record";
  const std::string r = tfrecord(data);
  ASSERT_EQ(r.size(), data.size() + 16);
  EXPECT_EQ(little_endian(r.substr(0, 8)), data.size());
  EXPECT_EQ(little_endian(r.substr(8, 4)), reference_masked(r.substr(0, 8)));
  EXPECT_EQ(r.substr(12, data.size()), data);
  EXPECT_EQ(little_endian(r.substr(12 + data.size(), 4)), reference_masked(data));
}

class TensorBoardFile : public test::ScratchDirTest {};

TEST_F(TensorBoardFile, WritesVersionStartThenScalarsByStep) {
  const double start = now_seconds();
  std::string file;
  {
    const auto tb = TensorBoardWriter::open(path("tb"), "test.yaml", 0);
    file = tb->path();
    tb->write(3, {{"a/x", 1.5}, {"a/y", -2.25}});
    StepStats s;
    s.step = 10;
    s.loss = 3.25;
    s.lr = 1e-3;
    s.grad_norm = 0.5;
    s.tokens_per_s = 12345.0;
    s.mem_gib = 1.75;
    s.skipped_steps = 2;
    tb->write_train(s);
    tb->write_eval(10, 2.5);
    tb->write_skipped(11, 3);
  }
  char host[256] = {};
  ASSERT_EQ(gethostname(host, sizeof host - 1), 0);
  std::smatch m;
  const std::string name = fs::path(file).filename().string();
  ASSERT_TRUE(std::regex_match(name, m, std::regex(R"(events\.out\.tfevents\.(\d+)\.(.+))")))
      << name;
  EXPECT_EQ(m[2].str(), host);
  EXPECT_GE(std::stod(m[1].str()), std::floor(start));
  EXPECT_LE(std::stod(m[1].str()), now_seconds());
  EXPECT_EQ(fs::path(file).parent_path(), fs::path(path("tb")));

  const std::vector<tensorboard::Event> events = read_events(file);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  ASSERT_TRUE(events[1].has_session_log());
  EXPECT_EQ(events[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(events[1].step(), 0);
  for (const auto& e : events) {
    EXPECT_GE(e.wall_time(), start - 1.0);
    EXPECT_LE(e.wall_time(), now_seconds());
  }
  auto expect_values = [&](const tensorboard::Event& e, int64_t step,
                           const std::vector<std::pair<std::string, float>>& want) {
    ASSERT_TRUE(e.has_summary());
    EXPECT_EQ(e.step(), step);
    ASSERT_EQ(e.summary().value_size(), int(want.size()));
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(e.summary().value(int(i)).tag(), want[i].first);
      EXPECT_EQ(e.summary().value(int(i)).simple_value(), want[i].second) << want[i].first;
    }
  };
  expect_values(events[2], 3, {{"a/x", 1.5f}, {"a/y", -2.25f}});
  expect_values(events[3], 10,
                {{"train/loss", 3.25f},
                 {"train/lr", 1e-3f},
                 {"train/grad_norm", 0.5f},
                 {"train/tokens_per_s", 12345.0f},
                 {"train/mem_gib", 1.75f},
                 {"train/skipped_steps", 2.0f}});
  expect_values(events[4], 10, {{"val/loss", 2.5f}});
  expect_values(events[5], 11, {{"train/skipped_steps", 3.0f}});
}

// A data.val mixture: the mean and one scalar per source, in one Event.
TEST_F(TensorBoardFile, MixtureGetsAValidationLossPerSource) {
  const auto tb = TensorBoardWriter::open(path("tb"), "test.yaml", 0);
  tb->write_eval(4, 2.0, {{"web", 1.5}, {"code", 2.5}});
  const std::vector<tensorboard::Event> events = read_events(tb->path());
  ASSERT_EQ(events.size(), 3u);
  const auto& summary = events[2].summary();
  ASSERT_EQ(summary.value_size(), 3);
  EXPECT_EQ(summary.value(0).tag(), "val/loss");
  EXPECT_EQ(summary.value(1).tag(), "val/loss_web");
  EXPECT_EQ(summary.value(1).simple_value(), 1.5f);
  EXPECT_EQ(summary.value(2).tag(), "val/loss_code");
  EXPECT_EQ(summary.value(2).simple_value(), 2.5f);
}

// Zero is a value like any other: it must be in the file, not left out as proto3 leaves defaults.
// The record is in the file as soon as write() returns, so that a killed run loses nothing.
TEST_F(TensorBoardFile, ZeroIsWrittenAtOnce) {
  const auto tb = TensorBoardWriter::open(path("tb"), "test.yaml", 0);
  tb->write(1, {{"zero", 0.0}});
  const std::vector<tensorboard::Event> events = read_events(tb->path());
  ASSERT_EQ(events.size(), 3u);
  ASSERT_EQ(events[2].summary().value_size(), 1);
  EXPECT_TRUE(events[2].summary().value(0).has_simple_value());
  EXPECT_EQ(events[2].summary().value(0).simple_value(), 0.0f);
}

// A run resumed at step 40 logs from step 41 on: its START says so.
TEST_F(TensorBoardFile, ResumedRunStartsAfterItsCheckpoint) {
  std::string file;
  {
    const auto tb = TensorBoardWriter::open(path("tb"), "test.yaml", 40);
    file = tb->path();
  }
  const std::vector<tensorboard::Event> events = read_events(file);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(events[1].step(), 41);
}

TEST_F(TensorBoardFile, UnwritableDirectoryIsAnErrorNamingIt) {
  test::write_text(path("file"), "not a directory");
  const std::string message =
      test::error_of([&] { TensorBoardWriter::open(path("file") + "/tb", "test.yaml", 0); });
  EXPECT_NE(message.find(path("file") + "/tb"), std::string::npos) << message;
  EXPECT_NE(message.find("log.tensorboard"), std::string::npos) << message;
}

// A write that fails (here: past a file-size limit) stops with an error naming the file.
TEST_F(TensorBoardFile, FailedWriteIsAnErrorNamingTheFile) {
  const auto tb = TensorBoardWriter::open(path("tb"), "test.yaml", 0);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of a signal
  rlimit small = saved;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const std::string message = test::error_of([&] {
    for (int step = 1; step <= 1000; ++step) tb->write(step, {{"train/loss", 1.0}});
  });
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(message.find(tb->path()), std::string::npos) << message;
  EXPECT_LE(fs::file_size(tb->path()), 4096u);
}

// ---- through a training run ----

class TensorBoardRun : public test::RunFixture {};

TEST_F(TensorBoardRun, EventFileHoldsTheMetricsOfEveryLoggedStep) {
  const auto r = run_mamba("train " + config("tb") + " log.tensorboard=true");
  ASSERT_EQ(r.status, 0) << r.output;
  const std::vector<double> losses = metric("tb", "loss"), val_losses = metric("tb", "val_loss");
  ASSERT_EQ(losses.size(), 8u);      // log.interval 1, 8 steps
  ASSERT_EQ(val_losses.size(), 3u);  // steps 0, 4, 8

  std::vector<int64_t> loss_steps, val_steps;
  std::vector<float> tb_losses, tb_val_losses;
  const std::vector<tensorboard::Event> events = read_events(event_file(dir("tb") + "/tb"));
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0].file_version(), "brain.Event:2");
  EXPECT_EQ(events[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(events[1].step(), 0);
  for (const auto& e : events) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() == "train/loss") {
        loss_steps.push_back(e.step());
        tb_losses.push_back(v.simple_value());
      }
      if (v.tag() == "val/loss") {
        val_steps.push_back(e.step());
        tb_val_losses.push_back(v.simple_value());
      }
    }
  }
  EXPECT_EQ(loss_steps, (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(val_steps, (std::vector<int64_t>{0, 4, 8}));
  for (size_t i = 0; i < losses.size() && i < tb_losses.size(); ++i) {
    EXPECT_EQ(tb_losses[i], float(losses[i])) << "step " << i + 1;
  }
  for (size_t i = 0; i < val_losses.size() && i < tb_val_losses.size(); ++i) {
    EXPECT_EQ(tb_val_losses[i], float(val_losses[i]));
  }
}

// A resumed run adds a second file whose START is the step after the checkpoint it resumed from.
TEST_F(TensorBoardRun, ResumedRunAddsAFileStartingAfterItsCheckpoint) {
  const std::string cfg = config("resumed");
  ASSERT_EQ(run_mamba("train " + cfg + " train.steps=4 log.tensorboard=true").status, 0);
  // A new file name needs a new second.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const auto r = run_mamba("train " + cfg + " train.steps=8 log.tensorboard=true");
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir("resumed") + "/tb")) {
    files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 2u);
  const std::vector<tensorboard::Event> events = read_events(files[1]);
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(events[1].step(), 5);
  std::vector<int64_t> loss_steps;
  for (const auto& e : events) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() == "train/loss") loss_steps.push_back(e.step());
    }
  }
  EXPECT_EQ(loss_steps, (std::vector<int64_t>{5, 6, 7, 8}));
}

TEST_F(TensorBoardRun, OffByDefault) {
  const auto r = run_mamba("train " + config("no_tb") + " train.steps=2");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir("no_tb") + "/metrics.jsonl"));
  EXPECT_FALSE(fs::exists(dir("no_tb") + "/tb"));
}

}  // namespace
}  // namespace mamba
