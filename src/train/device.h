// Chooses the compute backend for a run: train.device (auto | cpu | cuda) and train.precision.
#pragma once
#include <memory>

#include "kernels/backend.h"
#include "train/experiment_config.h"

namespace mamba {

// True when this build has the CUDA backend and a GPU is visible.
bool cuda_available();

// device auto picks CUDA when available. local_rank picks the GPU among this node's.
// precision bf16 needs CUDA. Errors name the config key and what to change.
std::unique_ptr<Backend> make_backend(const ExperimentConfig& config, int local_rank);

}  // namespace mamba
