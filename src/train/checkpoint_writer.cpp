#include "train/checkpoint_writer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "util/error.h"

namespace mamba {

namespace {

using Clock = std::chrono::steady_clock;

// Large enough that fetch overhead vanishes next to the write, small enough to be no memory.
constexpr size_t kChunkBytes = size_t{64} << 20;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int slow_save_ms() {
  const char* text = std::getenv("MAMBA_TEST_SLOW_SAVE_MS");
  return text ? std::atoi(text) : 0;
}

}  // namespace

CheckpointWriter::CheckpointWriter(Backend& backend, const ParamLayout& layout, std::string dir,
                                   int keep_last)
    : be_(backend),
      layout_(layout),
      dir_(std::move(dir)),
      keep_last_(keep_last),
      slow_ms_(slow_save_ms()) {}

bool CheckpointWriter::reserve_snapshot() {
  if (snapshot_ || no_room_) return snapshot_ != nullptr;
  const size_t bytes = 3 * size_t(layout_.total()) * sizeof(float);
  try {
    // Test hook: MAMBA_TEST_NO_SNAPSHOT_ROOM plays a device too full for the snapshot.
    if (std::getenv("MAMBA_TEST_NO_SNAPSHOT_ROOM")) throw_error("test: no room");
    snapshot_ = static_cast<float*>(be_.allocate(bytes));
  } catch (const Error& e) {
    no_room_ = true;
    std::printf(
        "checkpoint: no room for the asynchronous snapshot (%.2f GiB on %s: %s); checkpoints are "
        "written synchronously\n",
        double(bytes) / double(1ull << 30), be_.name().c_str(), e.what());
    std::fflush(stdout);
  }
  return snapshot_ != nullptr;
}

CheckpointWriter::~CheckpointWriter() {
  if (thread_.joinable()) thread_.join();
  if (error_) {
    try {
      std::rethrow_exception(error_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: the background checkpoint write failed: %s\n", e.what());
    }
  }
  be_.release(snapshot_);
}

void CheckpointWriter::wait() {
  if (thread_.joinable()) thread_.join();
  if (!written_.empty()) newest_ = written_;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

std::string CheckpointWriter::save(const float* params, const float* exp_avg,
                                   const float* exp_avg_sq, int64_t optimizer_steps,
                                   const TrainerState& state) {
  const auto start = Clock::now();
  if (writing_) {
    std::printf("checkpoint step %lld waits for the previous checkpoint, still being written\n",
                (long long)state.step);
    std::fflush(stdout);
  }
  wait();
  const int64_t n = layout_.total();
  // The sum of squares of floats cannot overflow a double, so it is finite iff every value is.
  auto finite = [&](const float* p, int64_t count) {
    return std::isfinite(be_.sum_of_squares(p, count));
  };
  if (!reserve_snapshot()) {
    if (!finite(params, n) || !finite(exp_avg, n) || !finite(exp_avg_sq, n)) {
      throw_nonfinite_checkpoint(dir_, state.step);
    }
    be_.synchronize();
    write({params, exp_avg, exp_avg_sq, optimizer_steps}, state);
    wait();
    last_stall_s_ = seconds_since(start);
    return newest_;
  }
  be_.copy(snapshot_, params, n * sizeof(float));
  be_.copy(snapshot_ + n, exp_avg, n * sizeof(float));
  be_.copy(snapshot_ + 2 * n, exp_avg_sq, n * sizeof(float));
  if (!finite(snapshot_, 3 * n)) throw_nonfinite_checkpoint(dir_, state.step);
  be_.synchronize();
  writing_ = true;
  const CheckpointSource source{snapshot_, snapshot_ + n, snapshot_ + 2 * n, optimizer_steps};
  thread_ = std::thread(&CheckpointWriter::write, this, source, state);
  last_stall_s_ = seconds_since(start);
  return checkpoint_path(dir_, state.step);
}

void CheckpointWriter::write(CheckpointSource source, TrainerState state) {
  const auto start = Clock::now();
  const bool background = writing_;
  try {
    const FetchBytes fetch = [this](void* host, const void* src, size_t bytes) {
      if (slow_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms_));
      be_.download_concurrent(host, src, bytes);
    };
    written_ =
        save_checkpoint_fetched(dir_, layout_, source, fetch, kChunkBytes, state, keep_last_);
    write_s_ = seconds_since(start);
    std::printf("checkpoint %s (written %s in %.1f s)\n", written_.c_str(),
                background ? "in the background" : "synchronously", write_s_);
    std::fflush(stdout);
  } catch (...) {
    error_ = std::current_exception();
  }
  writing_ = false;
}

}  // namespace mamba
