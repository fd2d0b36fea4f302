// Averaging gradients over the processes of a data-parallel run, behind one interface:
//   world 1          nothing to do;
//   CPU backend      one MPI_Allreduce over the gradient buffer, in place, after backward;
//   CUDA backend     NCCL, bucket by bucket while backward runs (nccl_reducer.h), or on one
//                    node the GPUs' copy engines (peer_copies, peer_reducer.h); without NCCL,
//                    through a host copy and MPI.
// Hierarchical (dist.hierarchical, hierarchy.h), each bucket is reduce-scattered in the node,
// all-reduced across nodes and all-gathered in the node instead; through MPI that is done after
// backward in buckets of bucket_mb.
// The trainer passes the reducer as the model's GradientReadyHook on the last micro-batch and
// calls finish() after it; the gradients are then the mean over ranks.
// With a ShardMap (ZeRO-1, dist.shard_optimizer) each bucket is reduce-scattered instead:
// finish() leaves the mean only in the slices this rank owns (the rest of the gradient buffer
// holds partial values), the optimizer updates those slices of its packed fp32 master and of the
// model's compute copy, and gather_weights() all-gathers the compute copy (in its own type: bf16
// on GPUs) and brings every rank's fp32-read tensors (MambaLM::exact) to every rank, so that every
// rank again holds all the weights the model reads. The model has no fp32 master then.
#pragma once
#include <memory>

#include "dist/communicator.h"
#include "dist/shard_map.h"
#include "model/mamba_lm.h"

namespace mamba {

// The dist section of the experiment config (its defaults are DistConfig's).
struct ReducerSettings {
  double bucket_mb;                 // NCCL bucket size
  double timeout_s;                 // a collective taking longer means a rank was lost
  bool bf16_grads;                  // communicate in bf16 (NCCL only)
  bool hierarchical;                // reduce in the node, across nodes, in the node
  bool peer_copies;                 // one node: copy engines instead of NCCL (peer_reducer.h)
  const ShardMap* shard = nullptr;  // ZeRO-1: this rank's part; outlives the reducer
};

class GradientReducer : public GradientReadyHook {
 public:
  void ready(int64_t, int64_t) override {}
  virtual void finish() = 0;
  // Sharded: every rank's updated slices of the compute copy to every rank, and the exact
  // buffer's values, each from the master (this rank's packed shard, AdamW::master) of the rank
  // that owns it, done when it returns. Unsharded: nothing to do.
  virtual void gather_weights(const float* /*master*/) {}
};

// Throws mamba::Error when bf16_grads or peer_copies is asked of a run that reduces through
// MPI, when peer_copies is combined with bf16_grads, hierarchical or a shard map, when a
// shard map is given for a run that can shard neither through NCCL nor in host memory (CUDA
// without NCCL), or together with bf16_grads or hierarchical, and when hierarchical is asked of
// nodes holding different numbers of ranks.
std::unique_ptr<GradientReducer> make_gradient_reducer(const ReducerSettings& settings,
                                                       Communicator& comm, MambaLM& model);

}  // namespace mamba
