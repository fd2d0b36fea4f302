// The training run: joins the model, the data loaders, the optimizer, checkpoints and the
// communicator. Trainer's constructor builds everything and resumes; train_step() is one
// optimizer step, reading top to bottom:
//   zero grads -> for each micro-batch: forward+backward (gradients summed, scaled 1/accum; the
//   last one starts the all-reduce as its layers finish) -> finish the all-reduce (mean over
//   ranks) -> clip -> lr from the schedule -> if the loss and norm are finite on every rank:
//   AdamW, else skip the update. Under ZeRO-1 the all-reduce is a reduce-scatter, clipping and
//   AdamW cover the rank's shard (its own fp32 master and moments), and the updated compute
//   weights are all-gathered after AdamW.
// run() is the loop around it: log, evaluate, sample and checkpoint, each its own member.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "dist/gradient_reducer.h"
#include "model/mamba_lm.h"
#include "train/checkpoint.h"
#include "train/checkpoint_writer.h"
#include "train/experiment_config.h"
#include "train/optimizer.h"
#include "train/run_log.h"
#include "train/tensorboard.h"
#include "util/dir_lock.h"
#include "util/rng.h"

namespace mamba {

struct TrainOutcome {
  int64_t step = 0;         // steps taken when the run ended
  double train_loss = 0.0;  // of the last step
  double val_loss = -1.0;   // of the final eval; < 0 if none ran
  bool preempted = false;   // stopped by SIGTERM/SIGINT
  std::string checkpoint;   // the newest checkpoint of the run (written or resumed from)
};

// What the model keeps for backward, from train.recompute and train.keep_layer_inputs (which the
// config forbids together).
ActivationMemory activation_memory(const TrainConfig& train);

// What one optimizer step did.
struct StepResult {
  double loss = 0.0;       // mean over micro-batches and ranks
  double grad_norm = 0.0;  // global, before clipping
  float lr = 0.0f;
  bool updated = false;  // false: non-finite loss or norm, the update was skipped
  double seconds = 0.0;
};

class Trainer {
 public:
  // Validates what can be checked before any work, takes the checkpoint directory's lock (rank
  // 0), builds backend, model, optimizer and data, and resumes per checkpoint.resume.
  Trainer(const ExperimentConfig& config, Communicator& comm);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to the configured number of steps, or until a stop signal (then checkpoints).
  TrainOutcome run();

  StepResult train_step();
  // Mean validation loss over all ranks; nullopt when a stop signal interrupted it.
  std::optional<double> evaluate();
  // A text sample from the current weights (rank 0 with a tokenizer only).
  std::string sample();
  // Writes a checkpoint of the current state; every rank writes its share of it. With
  // checkpoint.async it returns once the state is snapshotted; wait_for_saves() waits for the
  // write.
  void save();
  void wait_for_saves();
  bool async_saves() const { return writer_ != nullptr; }
  // Seconds the last save() held training, and the last complete write took (the same when
  // synchronous; known after wait_for_saves() when not), for benchmarks.
  double last_save_stall_seconds() const { return last_save_stall_s_; }
  double last_save_write_seconds() const {
    return writer_ ? writer_->last_write_seconds() : last_save_stall_s_;
  }

  // For benchmarks measuring how much of the all-reduce backward hides: false skips it (and,
  // with the optimizer sharded, the all-gather of the weights).
  void set_communication(bool on) { communicate_ = on; }

  const MambaLM& model() const { return *model_; }
  Backend& backend() const { return *backend_; }
  const TrainerState& state() const { return state_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t tokens_per_step() const { return int64_t(global_batch_) * cfg_.data.seq_len; }

 private:
  bool resume();
  // The whole weights (parameter layout, on the device) into the model and, sharded, into the
  // optimizer's master shard.
  void take_weights(const float* weights);
  void print_banner() const;
  void log_step(const StepResult& r);
  void log_skipped(const StepResult& r);

  const ExperimentConfig cfg_;
  Communicator& comm_;
  const bool leader_;
  const int micro_, accum_, global_batch_;
  const int64_t total_steps_;
  std::optional<DirectoryLock> lock_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<MambaLM> model_;
  std::unique_ptr<ShardMap> shard_;  // ZeRO-1 (dist.shard_optimizer, world > 1) only
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<TokenLoader> train_data_;
  std::vector<std::unique_ptr<TokenLoader>> val_data_;  // one per source of data.val
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<GradientReducer> reducer_;
  std::unique_ptr<MetricsFile> metrics_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;  // rank 0 with log.tensorboard only
  // checkpoint.async (never sharded): every rank's writer_ writes its share in the background;
  // without it the ranks write their shares together before save() returns
  // (parallel_checkpoint.h).
  std::unique_ptr<CheckpointWriter> writer_;
  TrainerState state_;
  Rng sample_rng_;
  std::string last_checkpoint_;
  double last_save_stall_s_ = 0.0;
  std::vector<int32_t> rows_, inputs_, targets_;
  std::vector<int64_t> poisoned_steps_;  // fault injection for tests (MAMBA_TEST_NAN_STEPS)
  bool communicate_ = true;
  int64_t skipped_in_a_row_ = 0;
  // Throughput over the steps since the last log line (training only).
  double window_seconds_ = 0.0, train_seconds_ = 0.0;
  int64_t window_steps_ = 0, first_step_ = 0;
};

}  // namespace mamba
