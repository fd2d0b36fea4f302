// The gradient reducer's settings from a run's dist section: the one place that maps DistConfig
// onto ReducerSettings (the trainer's and the layer profile's reducers).
#pragma once
#include "dist/gradient_reducer.h"
#include "dist/shard_map.h"
#include "train/experiment_config.h"

namespace mamba {

inline ReducerSettings reducer_settings(const DistConfig& dist, const ShardMap* shard = nullptr) {
  return ReducerSettings{dist.bucket_mb,    dist.timeout_s,   dist.bf16_grads,
                         dist.hierarchical, dist.peer_copies, shard};
}

}  // namespace mamba
