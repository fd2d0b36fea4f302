// Checkpoints: one directory per step, <dir>/step_00001200/, holding
//   model.safetensors      the weights under the reference names (loadable in PyTorch/mamba_ssm)
//   optimizer.safetensors  AdamW moments (exp_avg.<name>, exp_avg_sq.<name>) and its step count
//   trainer.json           step, tokens seen, data-loader position, RNG state, world size, the
//                          resolved config, the tuned GEMM algorithms if any, and the size and
//                          CRC-32 of both safetensors files;
//                          its own CRC-32 (over the rest of it) makes it self-checking
// A checkpoint is built in <dir>/step_XXXXXXXX.tmp, every file fsynced, then the directory is
// renamed into place (exchanged atomically with an existing one of the same step): a directory
// without the .tmp suffix is complete by construction, so a run killed while writing leaves only a
// .tmp that resume ignores and the next save clears. Loading verifies every checksum; a damaged
// checkpoint is never trained from.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dist/shard_map.h"
#include "io/safetensors.h"
#include "model/params.h"
#include "train/experiment_config.h"
#include "util/checksum.h"
#include "util/error.h"

namespace mamba {

// A checkpoint whose files are missing, truncated, malformed or fail their checksums (as opposed
// to an intact checkpoint that does not fit this run, which is a plain Error).
class CheckpointDamaged : public Error {
 public:
  using Error::Error;
};

// Host copies of the tensors a checkpoint holds (parameter layout each).
struct TrainingTensors {
  std::vector<float> params, exp_avg, exp_avg_sq;
  int64_t optimizer_steps = 0;
};

// A mixture source's place in its order (data/loader.h), by the source's name.
struct SourcePosition {
  std::string name;
  uint64_t epoch = 0, sample = 0;
};

struct TrainerState {
  int64_t step = 0;           // optimizer steps taken, skipped updates included
  int64_t tokens_seen = 0;    // training tokens consumed, all ranks
  int64_t skipped_steps = 0;  // steps whose update was dropped for a non-finite loss or norm
  uint64_t loader_epoch = 0, loader_sample = 0;
  // A mixture's position, source by source; empty for a plain glob (loader_epoch, loader_sample).
  std::vector<SourcePosition> loader_sources;
  std::array<uint64_t, 4> rng{};  // the sampling RNG
  int world = 1;                  // processes of the run that wrote it (informational)
  std::string config_yaml;        // resolved config of the run that wrote it
  // The GPU's tuned GEMM algorithms (Backend::gemm_algorithms; "" when none were tuned), for a
  // resumed run to compute as this one did.
  std::string gemm_algorithms;
};

// Fails early, with the reason, when dir cannot be created or written.
void check_checkpoint_dir_writable(const std::string& dir);

// Writes the checkpoint for state.step and deletes all but the newest keep_last (0 keeps all).
// Refuses (mamba::Error) tensors that hold a NaN or an infinity. Returns the checkpoint's path.
std::string save_checkpoint(const std::string& dir, const ParamLayout& layout,
                            const TrainingTensors& tensors, const TrainerState& state,
                            int keep_last);

// The three tensors of a save where they lie (a device snapshot), each with the parameter layout.
struct CheckpointSource {
  const float* params;
  const float* exp_avg;
  const float* exp_avg_sq;
  int64_t optimizer_steps;
};

// As save_checkpoint, for tensors the host reads through fetch, one chunk of chunk_bytes at a
// time (the asynchronous writer's path: host memory stays at one chunk). The caller has checked
// that the tensors are finite (throw_nonfinite_checkpoint otherwise).
std::string save_checkpoint_fetched(const std::string& dir, const ParamLayout& layout,
                                    const CheckpointSource& source, const FetchBytes& fetch,
                                    size_t chunk_bytes, const TrainerState& state, int keep_last);

// The refusal of a save whose weights or moments hold NaN or infinity.
[[noreturn]] void throw_nonfinite_checkpoint(const std::string& dir, int64_t step);

// Where the checkpoint of `step` goes: <dir>/step_XXXXXXXX.
std::string checkpoint_path(const std::string& dir, int64_t step);

// The newest complete checkpoint in dir, or "" when there is none (not verified).
std::string latest_checkpoint(const std::string& dir);

// Where a load puts the checkpoint's values, piece by piece as they are read: tensor 0 (params),
// 1 (exp_avg) or 2 (exp_avg_sq), values [at, at + n) of its parameter layout.
using CheckpointSink = std::function<void(int tensor, int64_t at, const float* values, int64_t n)>;

// Reads and verifies params, optimizer moments and trainer state, streaming the files (several
// reader threads, 64 MiB chunks: host memory stays bounded) into sink; returns the optimizer's
// step count. CheckpointDamaged when a file is damaged (checksums are compared once a file has
// been read, so the sink may have received values of a damaged file: the caller loads another
// checkpoint or stops), Error naming both shapes when it was written for another model.
int64_t load_checkpoint(const std::string& path, const ParamLayout& layout,
                        const CheckpointSink& sink, TrainerState& state);
// The same into host vectors.
void load_checkpoint(const std::string& path, const ParamLayout& layout, TrainingTensors& tensors,
                     TrainerState& state);

// A load that reads only some ranges of the moments (a ZeRO-1 rank's own, parallel_checkpoint.h):
// optimizer.safetensors is then read in part, so its checksum is left to the caller, who combines
// the pieces of every rank. In: ranges (floats of the parameter layout, in buffer order) and
// whether to read the file's header bytes too. Out: the digests of the pieces read, the file's
// size, and what trainer.json says of it (none: a checkpoint written before checksums).
struct MomentSlices {
  std::vector<ShardRange> ranges;
  bool header = false;
  std::vector<DigestPiece> pieces;
  uint64_t file_bytes = 0;
  std::optional<FileDigest> expected;
};
// As load_checkpoint, reading the moments of slices.ranges only (the weights whole, checked).
// An Error when the moments are not stored in the parameter layout's order, as this program
// writes them.
int64_t load_checkpoint_slices(const std::string& path, const ParamLayout& layout,
                               const CheckpointSink& sink, TrainerState& state,
                               MomentSlices& slices);

// Complete checkpoints of dir, oldest first.
std::vector<std::string> list_checkpoints(const std::string& dir);
// Renames a damaged checkpoint to <path>.corrupt (or .corrupt.2, ...), with a warning.
void set_aside(const std::string& path);

// ---- A save split among processes (parallel_checkpoint.h) ----
// A checkpoint file as a save writes it: the bytes before its tensors, then the tensors in the
// parameter layout's order (model.safetensors: the weights; optimizer.safetensors: exp_avg, then
// exp_avg_sq), so float i of tensor k of the file lies at header.size() + 4 * (k * total + i).
struct CheckpointFilePlan {
  std::string name;    // model.safetensors, optimizer.safetensors
  std::string header;  // as write_safetensors writes it
  uint64_t bytes = 0;  // the whole file
};
CheckpointFilePlan model_file_plan(const ParamLayout& layout);
CheckpointFilePlan optimizer_file_plan(const ParamLayout& layout, int64_t optimizer_steps);
// Clears and creates <dir>/step_XXXXXXXX.tmp, where a checkpoint is built; returns its path.
std::string begin_checkpoint(const std::string& dir, int64_t step);
// Writes trainer.json (state, and files: the digests of the safetensors files) into tmp, fsynced,
// then renames tmp into place and deletes all but the newest keep_last. Returns the path.
std::string complete_checkpoint(const std::string& dir, const std::string& tmp,
                                const TrainerState& state,
                                const std::map<std::string, FileDigest>& files, int keep_last);

// A checkpoint directory as it is, or a run directory's newest checkpoint; errors otherwise.
std::string resolve_checkpoint(const std::string& path);
// The resolved config a checkpoint was written with (from its trainer.json).
ExperimentConfig checkpoint_experiment_config(const std::string& path);

// Only the weights (for eval / generate), verified; the model config comes from the checkpoint.
ModelConfig checkpoint_model_config(const std::string& path);
void load_checkpoint_weights(const std::string& path, const ParamLayout& layout, float* params);

}  // namespace mamba
