// The training run: joins the model, the data loaders, the optimizer, checkpoints and the
// communicator. One optimizer step reads top to bottom in trainer.cpp:
//   zero grads -> for each micro-batch: forward+backward (gradients summed, scaled 1/accum)
//   -> all-reduce mean over ranks -> clip -> lr from the schedule -> AdamW -> log/eval/checkpoint.
#pragma once
#include <cstdint>
#include <string>

#include "train/distributed.h"
#include "train/experiment_config.h"

namespace mamba {

struct TrainOutcome {
  int64_t step = 0;         // steps taken when the run ended
  double train_loss = 0.0;  // of the last step
  double val_loss = -1.0;   // of the final eval; < 0 if none ran
  bool preempted = false;   // stopped by SIGTERM/SIGINT
  std::string checkpoint;   // the last checkpoint written
};

TrainOutcome run_training(const ExperimentConfig& config, Communicator& comm);

}  // namespace mamba
