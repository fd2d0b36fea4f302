// Checkpoints: one directory per step, <dir>/step_00001200/, holding
//   model.safetensors      the weights under the reference names (loadable in PyTorch/mamba_ssm)
//   optimizer.safetensors  AdamW moments (exp_avg.<name>, exp_avg_sq.<name>) and its step count
//   trainer.json           step, tokens seen, data-loader position, RNG state, world size and the
//                          resolved config
// A checkpoint is built in <dir>/step_XXXXXXXX.tmp, every file fsynced, then the directory is
// renamed into place: a directory without the .tmp suffix is complete by construction, so a run
// killed while writing leaves only a .tmp that resume ignores and the next save clears.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/params.h"
#include "train/experiment_config.h"

namespace mamba {

// Host copies of the tensors a checkpoint holds (parameter layout each).
struct TrainingTensors {
  std::vector<float> params, exp_avg, exp_avg_sq;
  int64_t optimizer_steps = 0;
};

struct TrainerState {
  int64_t step = 0;         // optimizer steps taken
  int64_t tokens_seen = 0;  // training tokens consumed, all ranks
  uint64_t loader_epoch = 0, loader_sample = 0;
  std::array<uint64_t, 4> rng{};  // the sampling RNG
  int world = 1;                  // processes of the run that wrote it (informational)
  std::string config_yaml;        // resolved config of the run that wrote it
};

// Fails early, with the reason, when dir cannot be created or written.
void check_checkpoint_dir_writable(const std::string& dir);

// Writes the checkpoint for state.step and deletes all but the newest keep_last (0 keeps all).
// Returns the checkpoint's path.
std::string save_checkpoint(const std::string& dir, const ParamLayout& layout,
                            const TrainingTensors& tensors, const TrainerState& state,
                            int keep_last);

// The newest complete checkpoint in dir, or "" when there is none.
std::string latest_checkpoint(const std::string& dir);

// Reads params, optimizer moments and trainer state. A checkpoint written for another model
// shape is refused with a message naming both shapes.
void load_checkpoint(const std::string& path, const ParamLayout& layout, TrainingTensors& tensors,
                     TrainerState& state);

// A checkpoint directory as it is, or a run directory's newest checkpoint; errors otherwise.
std::string resolve_checkpoint(const std::string& path);
// The resolved config a checkpoint was written with (from its trainer.json).
ExperimentConfig checkpoint_experiment_config(const std::string& path);

// Only the weights (for eval / generate); the model config comes from the checkpoint.
ModelConfig checkpoint_model_config(const std::string& path);
void load_checkpoint_weights(const std::string& path, const ParamLayout& layout, float* params);

}  // namespace mamba
