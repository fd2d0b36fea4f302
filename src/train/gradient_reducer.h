// Averaging gradients over the processes of a data-parallel run, behind one interface:
//   world 1          nothing to do;
//   CPU backend      one MPI_Allreduce over the gradient buffer, in place, after backward;
//   CUDA backend     NCCL, bucket by bucket while backward runs (kernels/cuda/nccl_reducer.h);
//                    without NCCL, through a host copy and MPI.
// The trainer passes the reducer as the model's GradientReadyHook on the last micro-batch and
// calls finish() after it; the gradients are then the mean over ranks.
#pragma once
#include <memory>

#include "model/mamba_lm.h"
#include "train/distributed.h"
#include "train/experiment_config.h"

namespace mamba {

class GradientReducer : public GradientReadyHook {
 public:
  void ready(int64_t, int64_t) override {}
  virtual void finish() = 0;
};

std::unique_ptr<GradientReducer> make_gradient_reducer(const ExperimentConfig& config,
                                                       Communicator& comm, MambaLM& model);

}  // namespace mamba
