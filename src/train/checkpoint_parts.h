// The pieces of a checkpoint that several processes write together (parallel_checkpoint.h
// synchronously, checkpoint_writer.h in the background): where each rank's share of the files
// lies, the files created at their final size, a share written with pwrite and checksummed, and
// the checkpoint completed from every rank's piece checksums.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "dist/shard_map.h"
#include "io/safetensors.h"
#include "model/params.h"
#include "train/checkpoint.h"
#include "util/checksum.h"

namespace mamba {

// floats [0, count) of src (the backend's memory), written at byte offset of file 0
// (model.safetensors) or 1 (optimizer.safetensors).
struct CheckpointPiece {
  int file;
  uint64_t offset;
  const float* src;
  int64_t count;
};

// The piece checksums of what one rank wrote, per file; or the error that stopped it.
struct PartDigests {
  std::vector<DigestPiece> files[2];
  std::string error;
};

// The two safetensors files of a save of layout with this optimizer step count.
struct CheckpointPlans {
  CheckpointFilePlan files[2];
  CheckpointPlans(const ParamLayout& layout, int64_t optimizer_steps)
      : files{model_file_plan(layout), optimizer_file_plan(layout, optimizer_steps)} {}
};

// Floats [lo, hi) of the flat buffer that rank writes of an evenly split buffer of n.
void even_share(int rank, int world, int64_t n, int64_t& lo, int64_t& hi);

// The pieces of floats [begin, begin + count) of the weights (tensor 0) or of moment 1 or 2,
// taken from src.
CheckpointPiece piece_of(const CheckpointPlans& plans, int64_t n, int tensor, int64_t begin,
                         int64_t count, const float* src);

// Rank 0, first: clears <dir>/step_XXXXXXXX.tmp and creates both files at their final size with
// their headers; returns the headers' pieces. Errors name the path.
PartDigests create_checkpoint_files(const std::string& dir, int64_t step,
                                    const CheckpointPlans& plans);

// Writes pieces into the files of <dir>/step_XXXXXXXX.tmp through fetch (null: the sources are
// host memory), one chunk of host memory at a time, checksums each and fsyncs them. Errors name
// the path. Test hook: MAMBA_TEST_SAVE_FAULT=<fail|kill>:<rank>:<step> makes that rank throw, or
// die by SIGKILL, once it has written its first piece in the save of that step.
PartDigests write_checkpoint_pieces(const std::string& dir, int64_t step,
                                    const CheckpointPlans& plans,
                                    const std::vector<CheckpointPiece>& pieces,
                                    const FetchBytes* fetch, int rank);

// Rank 0, last: combines every rank's piece checksums into each file's digest, writes
// trainer.json and renames the directory into place (complete_checkpoint). Returns its path.
std::string finish_parallel_checkpoint(const std::string& dir, const CheckpointPlans& plans,
                                       const std::vector<PartDigests>& parts,
                                       const TrainerState& state, int keep_last);

// part_<rank>.done in the checkpoint's .tmp directory: a rank's piece checksums (or its error),
// written atomically once its pieces are fsynced, for rank 0 to collect without a collective.
void write_part_file(const std::string& dir, int64_t step, int rank, const PartDigests& part);
// Waits for rank's part file, up to timeout_s; an Error saying that rank stalled or died when it
// does not come. The part's own error is returned in it, not thrown.
PartDigests wait_for_part_file(const std::string& dir, int64_t step, int rank, double timeout_s);

}  // namespace mamba
