// Asynchronous checkpoint saves. save() copies the weights and both AdamW moments into a snapshot
// on the backend's device (one device-to-device copy), refuses it when it holds NaN or infinity,
// and hands it to a background thread. That thread streams the snapshot to disk in bounded
// chunks (Backend::download_concurrent, on a queue of its own) through the same path as a
// synchronous save: files in step_XXXXXXXX.tmp, checksummed in trainer.json, fsynced, then the
// directory renamed into place. Training goes on meanwhile; the checkpoint becomes visible at the
// rename. A save that finds the previous write unfinished waits for it and says so.
//
// With several processes (comm given, world > 1, unsharded: every rank holds the same state),
// each rank snapshots and writes only its share, the r-th of `world` equal ranges of each of the
// three buffers (checkpoint_parts.h). The ranks agree that their shares are finite and rank 0
// creates the files in save(), before any rank's thread starts (the only collectives, on the
// calling thread: MPI is never called from the background). Each thread pwrite()s its share, fsyncs
// it and leaves part_<r>.done with its piece checksums in the .tmp directory; rank 0's thread waits
// for every part (up to dist.timeout_s, then an error saying which rank stalled or died), combines
// the checksums, writes trainer.json and renames the directory into place.
//
// Memory: the snapshot takes 3 x 4 bytes per parameter (divided by the number of processes when
// they share the write) on the device (the CPU backend: host), allocated at the first save, so a
// run that never saves never holds it; the writer takes one chunk of host memory, whatever the
// model's size. When the device has no room for the snapshot,
// saves stream from the live buffers instead, synchronously (training waits), and the log says so
// once.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>

#include "dist/communicator.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "train/checkpoint.h"
#include "train/checkpoint_parts.h"

namespace mamba {

class CheckpointWriter {
 public:
  // comm: the processes that share every save (null: this one alone); part_timeout_s: how long
  // rank 0 waits for another rank's part.
  CheckpointWriter(Backend& backend, const ParamLayout& layout, std::string dir, int keep_last,
                   Communicator* comm = nullptr, double part_timeout_s = 600.0);
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
  // Where this rank's share of the weights and both moments lies (snapshot or live buffers).
  using ShareSource = std::array<const float*, 3>;
  // Shared saves: snapshots this rank's share, rank 0 creates the files, and the write starts.
  std::string save_share(const float* params, const float* exp_avg, const float* exp_avg_sq,
                         int64_t optimizer_steps, const TrainerState& state);
  // Writes this rank's share; rank 0 then collects the parts and completes the checkpoint.
  void write_share(ShareSource source, int64_t optimizer_steps, TrainerState state);

  Backend& be_;
  const ParamLayout& layout_;
  const std::string dir_;
  const int keep_last_;
  Communicator* const comm_;  // null, or world > 1: shared saves
  const double part_timeout_s_;
  int64_t lo_ = 0, hi_ = 0;  // this rank's share of each buffer, in floats
  PartDigests headers_;      // rank 0: the headers it wrote when it created the files
  const int slow_ms_;  // test hook: MAMBA_TEST_SLOW_SAVE_MS delays each chunk the writer fetches
  FetchBytes fetch_;   // how the writer thread reads the snapshot, chunk by chunk
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
