// Learning-rate schedule: linear warmup from 0 over optim.warmup steps, then decay to
// optim.min_lr at total_steps (cosine or linear), or constant. Steps count from 0: the first
// update uses step 0 and gets lr / warmup.
#pragma once
#include <cstdint>

#include "train/experiment_config.h"

namespace mamba {

float learning_rate(const OptimConfig& optim, int64_t total_steps, int64_t step);

}  // namespace mamba
