// Checkpoints written and read by all the processes of a data-parallel run together, in the
// format of train/checkpoint.h, unchanged: the same three files, so any checkpoint resumes on any
// number of processes, sharded or not, and loads in PyTorch as before.
//
// Save (collective): rank 0 clears step_XXXXXXXX.tmp and creates both safetensors files at their
// final size with their headers, which the parameter layout fixes in advance. Then every rank
// pwrite()s its share at its offsets, checksums each contiguous piece it wrote and fsyncs:
// the r-th of `world` equal ranges of the weights (every rank holds them whole) and of the
// moments, or, sharded (ZeRO-1), its own slices of the fp32 master weights and of the moments
// from its packed shards, so nothing is gathered. Rank 0 then collects every rank's piece checksums
// (and any rank's error), combines them into each file's CRC-32 (zlib's crc32_combine), writes
// trainer.json and renames the directory into place: a checkpoint becomes visible only once every
// rank's part is on disk. A rank that fails mid-save makes every rank throw its error; one that
// dies leaves the others in the exchange until the job is taken down (or dist.timeout_s). Either
// way only the .tmp remains, which resume ignores and the next save clears.
//
// Sharded load (collective): each rank reads the weights whole (it needs them all, and checks
// their CRC-32 itself) and, of optimizer.safetensors, only its own slices of the moments (rank 0
// the header too). Those pieces tile the file, so rank 0 combines their checksums into the
// file's and compares it with trainer.json; every rank learns the verdict and throws the same
// error when it is damaged.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "dist/communicator.h"
#include "dist/shard_map.h"
#include "kernels/backend.h"
#include "model/params.h"
#include "train/checkpoint.h"

namespace mamba {

// The state to save, in the backend's memory.
struct ParallelSource {
  const float* params;      // the whole fp32 weights, or this rank's packed slices when sharded
  const float* exp_avg;     // likewise
  const float* exp_avg_sq;  // likewise
  int64_t optimizer_steps;
};

// Collective; map: the ZeRO-1 shard map, null when unsharded. Every rank refuses NaN or infinity
// in any rank's share (throw_nonfinite_checkpoint). Returns the checkpoint's path on every rank;
// throws the same error on every rank when any rank's part failed. Host memory: one chunk per
// rank when the backend's memory is not host memory, none otherwise.
std::string save_checkpoint_parallel(Communicator& comm, Backend& be, const std::string& dir,
                                     const ParamLayout& layout, const ShardMap* map,
                                     const ParallelSource& source, const TrainerState& state,
                                     int keep_last);

// Collective: every rank loads path, the moments of its own slices only. CheckpointDamaged on
// every rank when any piece is damaged, Error on every rank when it was written for another model.
int64_t load_checkpoint_sharded(Communicator& comm, const std::string& path,
                                const ParamLayout& layout, const ShardMap& map,
                                const CheckpointSink& sink, TrainerState& state);

// Loads the checkpoint at path into the run (load_checkpoint, or load_checkpoint_sharded);
// returns the optimizer's step count, throws CheckpointDamaged when it is damaged.
using CheckpointLoad = std::function<int64_t(const std::string& path)>;

// Collective: loads the newest intact checkpoint of dir on every rank at once. Rank 0 names the
// candidates, newest first, and sets damaged ones aside (renamed to <name>.corrupt, never deleted,
// with a warning naming each); every rank loads each candidate with `load` at the
// same time as the others (not one rank after another), and the ranks agree that it is intact
// before any of them keeps it. Returns the path loaded on every rank, "" when none is left.
std::string load_newest_intact_checkpoint_together(Communicator& comm, const std::string& dir,
                                                   const CheckpointLoad& load,
                                                   int64_t& optimizer_steps);

}  // namespace mamba
