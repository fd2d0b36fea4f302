#include "train/checkpoint_writer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "util/clock.h"
#include "util/error.h"

namespace mamba {

namespace {

// Large enough that fetch overhead vanishes next to the write, small enough to be no memory.
constexpr size_t kChunkBytes = size_t{64} << 20;

int slow_save_ms() {
  const char* text = std::getenv("MAMBA_TEST_SLOW_SAVE_MS");
  return text ? std::atoi(text) : 0;
}

}  // namespace

CheckpointWriter::CheckpointWriter(Backend& backend, const ParamLayout& layout, std::string dir,
                                   int keep_last, Communicator* comm, double part_timeout_s)
    : be_(backend),
      layout_(layout),
      dir_(std::move(dir)),
      keep_last_(keep_last),
      comm_(comm && comm->world() > 1 ? comm : nullptr),
      part_timeout_s_(part_timeout_s),
      slow_ms_(slow_save_ms()),
      fetch_([this](void* host, const void* src, size_t bytes) {
        if (slow_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(slow_ms_));
        be_.download_concurrent(host, src, bytes);
      }) {
  hi_ = layout_.total();
  if (comm_) even_share(comm_->rank(), comm_->world(), layout_.total(), lo_, hi_);
}

bool CheckpointWriter::reserve_snapshot() {
  if (snapshot_ || no_room_) return snapshot_ != nullptr;
  const size_t bytes = 3 * size_t(hi_ - lo_) * sizeof(float);
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
  if (writing_ && (!comm_ || comm_->rank() == 0)) {
    std::printf("checkpoint step %lld waits for the previous checkpoint, still being written\n",
                (long long)state.step);
    std::fflush(stdout);
  }
  wait();
  if (comm_) {
    const std::string path = save_share(params, exp_avg, exp_avg_sq, optimizer_steps, state);
    last_stall_s_ = seconds_since(start);
    return path;
  }
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
    written_ =
        save_checkpoint_fetched(dir_, layout_, source, fetch_, kChunkBytes, state, keep_last_);
    write_s_ = seconds_since(start);
    std::printf("checkpoint %s (written %s in %.1f s)\n", written_.c_str(),
                background ? "in the background" : "synchronously", write_s_);
    std::fflush(stdout);
  } catch (...) {
    error_ = std::current_exception();
  }
  writing_ = false;
}

std::string CheckpointWriter::save_share(const float* params, const float* exp_avg,
                                         const float* exp_avg_sq, int64_t optimizer_steps,
                                         const TrainerState& state) {
  const int64_t n = hi_ - lo_;
  ShareSource source{params + lo_, exp_avg + lo_, exp_avg_sq + lo_};
  const bool snapshot = reserve_snapshot();
  if (snapshot) {
    for (int k = 0; k < 3; ++k) {
      be_.copy(snapshot_ + k * n, source[size_t(k)], n * sizeof(float));
      source[size_t(k)] = snapshot_ + k * n;
    }
  }
  // Every rank checks its share; they agree, so that all refuse or none does.
  bool finite = true;
  for (const float* s : source) finite = finite && std::isfinite(be_.sum_of_squares(s, n));
  if (comm_->allreduce_sum(finite ? 0.0 : 1.0) > 0.0) throw_nonfinite_checkpoint(dir_, state.step);
  be_.synchronize();
  std::string error;
  if (comm_->rank() == 0) {
    try {
      headers_ =
          create_checkpoint_files(dir_, state.step, CheckpointPlans(layout_, optimizer_steps));
    } catch (const Error& e) {
      error = e.what();
    }
  }
  error = broadcast_string(*comm_, error, 0);
  if (!error.empty()) throw Error(error);
  if (!snapshot) {
    // No room for the snapshot: the share streams from the live buffers before save returns.
    write_share(source, optimizer_steps, state);
    wait();
    return newest_;
  }
  writing_ = true;
  thread_ = std::thread(&CheckpointWriter::write_share, this, source, optimizer_steps, state);
  return checkpoint_path(dir_, state.step);
}

void CheckpointWriter::write_share(ShareSource source, int64_t optimizer_steps,
                                   TrainerState state) {
  const auto start = Clock::now();
  const bool background = writing_;
  const int rank = comm_->rank(), world = comm_->world();
  try {
    const CheckpointPlans plans(layout_, optimizer_steps);
    const int64_t n = layout_.total();
    std::vector<CheckpointPiece> pieces;
    for (int k = 0; k < 3; ++k) pieces.push_back(piece_of(plans, n, k, lo_, hi_ - lo_, source[k]));
    PartDigests part;
    try {
      part = write_checkpoint_pieces(dir_, state.step, plans, pieces, &fetch_, rank);
    } catch (const std::exception& e) {
      part.error = e.what();
    }
    if (rank != 0) {
      write_part_file(dir_, state.step, rank, part);
      if (!part.error.empty()) throw Error(part.error);
      written_ = checkpoint_path(dir_, state.step);
    } else {
      if (!part.error.empty()) throw Error(part.error);
      std::vector<PartDigests> parts{headers_, part};
      for (int q = 1; q < world; ++q) {
        parts.push_back(wait_for_part_file(dir_, state.step, q, part_timeout_s_));
        if (!parts.back().error.empty()) {
          throw_error("rank ", q, ": ", parts.back().error);
        }
      }
      written_ = finish_parallel_checkpoint(dir_, plans, parts, state, keep_last_);
      write_s_ = seconds_since(start);
      std::printf("checkpoint %s (written %s by %d ranks in %.1f s)\n", written_.c_str(),
                  background ? "in the background" : "synchronously", world, write_s_);
      std::fflush(stdout);
    }
  } catch (...) {
    error_ = std::current_exception();
  }
  writing_ = false;
}

}  // namespace mamba
