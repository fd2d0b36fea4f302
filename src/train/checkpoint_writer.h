// Asynchronous checkpoint saves. save() copies the weights and both AdamW moments into a snapshot
// on the backend's device (one device-to-device copy), refuses it when it holds NaN or infinity,
// and hands it to a background thread. That thread streams the snapshot to disk in bounded
// chunks (Backend::download_concurrent, on a queue of its own) through the same path as a
// synchronous save: files in step_XXXXXXXX.tmp, checksummed in trainer.json, fsynced, then the
// directory renamed into place. Training goes on meanwhile; the checkpoint becomes visible at the
// rename. A save that finds the previous write unfinished waits for it and says so.
//
// Memory: the snapshot takes 3 x 4 bytes per parameter on the device (the CPU backend: host),
// allocated at the first save, so a run that never saves never holds it; the writer takes one
// chunk of host memory, whatever the model's size. When the device has no room for the snapshot,
// saves stream from the live buffers instead, synchronously (training waits), and the log says so
// once.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>

#include "kernels/backend.h"
#include "model/params.h"
#include "train/checkpoint.h"

namespace mamba {

class CheckpointWriter {
 public:
  CheckpointWriter(Backend& backend, const ParamLayout& layout, std::string dir, int keep_last);
  // Waits for the write in flight; its error, if any, is printed (wait() throws it).
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Snapshots the three device buffers (parameter layout each) and starts writing the
  // checkpoint of state.step; returns the path it will have. Throws the previous write's error,
  // or the NaN refusal.
  std::string save(const float* params, const float* exp_avg, const float* exp_avg_sq,
                   int64_t optimizer_steps, const TrainerState& state);
  // Waits for the write in flight; throws its error.
  void wait();
  // The newest checkpoint this writer completed ("" before the first).
  const std::string& newest() const { return newest_; }
  // Seconds the last save() held the caller: the wait for the previous write plus the snapshot.
  double last_stall_seconds() const { return last_stall_s_; }
  // Seconds the last completed background write took, known after wait().
  double last_write_seconds() const { return write_s_; }

 private:
  // Allocates the snapshot on first use; false when the device has no room for it.
  bool reserve_snapshot();
  // Writes the checkpoint of state from source (on the caller's or the background thread).
  void write(CheckpointSource source, TrainerState state);

  Backend& be_;
  const ParamLayout& layout_;
  const std::string dir_;
  const int keep_last_;
  const int slow_ms_;  // test hook: MAMBA_TEST_SLOW_SAVE_MS delays each chunk the writer fetches
  float* snapshot_ = nullptr;
  bool no_room_ = false;  // the snapshot did not fit: saves are synchronous
  std::thread thread_;
  std::atomic<bool> writing_{false};
  std::exception_ptr error_;
  std::string written_;  // set by the thread, read after join
  std::string newest_;
  double last_stall_s_ = 0.0;
  double write_s_ = 0.0;  // set by the thread, read after join
};

}  // namespace mamba
