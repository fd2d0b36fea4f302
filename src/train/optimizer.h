// AdamW over the flat parameter buffer, with the design.md §1 weight-decay groups, and global
// gradient-norm clipping with PyTorch's clip_grad_norm_ semantics. Moments are fp32 buffers on
// the backend's device. Unsharded they have the parameter layout, so checkpoints store them as
// they are, and the fp32 master weights are the model's (MambaLM::params). Under ZeRO-1
// (dist/shard_map.h) an optimizer updates only the ranges of the buffer its rank owns and keeps
// their moments and their fp32 master weights packed (the model then has no fp32 master), and
// each rank writes its own slices of a checkpoint (train/parallel_checkpoint.h).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "dist/shard_map.h"
#include "kernels/backend.h"
#include "model/params.h"

namespace mamba {

struct AdamWSettings {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class AdamW {
 public:
  // ranges: the parts of the flat buffer this optimizer updates, in buffer order, each with its
  // offset in the packed moments and master; empty means the whole buffer, with no master of its
  // own.
  AdamW(const ParamLayout& layout, Backend& backend, const AdamWSettings& settings,
        std::vector<ShardRange> ranges = {});
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update with learning rate lr of the owned ranges of the weights; weight decay only on
  // tensors whose layout says so. The weights: params (the model's fp32 master, parameter layout)
  // unsharded; sharded, the packed master(), and params must be null. One backend op for all
  // tensors; when compute_copy (the model's, MambaLM::compute_copy) is given, the updated
  // elements of it are written in the same pass, and the model need not refresh it
  // (params_updated). Sharded, that is how the new weights leave the master. The gradients are
  // taken times grad_scale (clip_coefficient) as they are read.
  void step(float* params, const float* grads, float lr, Act compute_copy = {},
            float grad_scale = 1.0f);

  const std::vector<ShardRange>& ranges() const { return ranges_; }
  // Floats of each moment: the parameter count, or the owned part of it.
  int64_t size() const { return size_; }
  // Host copies of the (packed) moments, for inspection (tests).
  std::vector<float> download_m() const { return download(m_); }
  std::vector<float> download_v() const { return download(v_); }
  // The moments on the device, for the asynchronous checkpoint snapshot (unsharded).
  float* moment_m() { return m_; }
  float* moment_v() { return v_; }
  // Sharded: the fp32 master weights of the owned ranges, packed as the moments (null
  // unsharded), and their host copy (tests).
  float* master() { return master_; }
  std::vector<float> download_master() const { return download(master_); }
  // Sharded: the owned ranges of weights (a parameter-layout buffer on the device) into the
  // master, as a start-up or a checkpoint load gives them.
  void take_master(const float* weights);
  // Values [at, at + n) of moment 0 (m) or 1 (v) in the parameter layout, as a checkpoint load
  // streams them: the owned part is kept.
  void load_moment(int moment, int64_t at, const float* values, int64_t n);
  // Back to the state of a fresh run (after a failed load wrote into them).
  void zero_moments();

  int64_t steps_taken = 0;

 private:
  std::vector<float> download(const float* moment) const;

  Backend& be_;
  AdamWSettings settings_;
  std::vector<ShardRange> ranges_;
  std::vector<AdamWSegment> segments_;  // the owned part of every tensor
  int64_t size_ = 0;
  float* m_;
  float* v_;
  float* master_ = nullptr;
};

// The global L2 norm of grads (accumulated in double).
double grad_norm(Backend& backend, const float* grads, int64_t n);
// The same over the ranges of grads a rank owns (ZeRO-1): sum_over_ranks adds the squared norms
// of all ranks, so that every rank clips by the global norm.
double grad_norm(Backend& backend, const float* grads, const std::vector<ShardRange>& ranges,
                 const std::function<double(double)>& sum_over_ranks);
// Gradient clipping as torch.nn.utils.clip_grad_norm_: the gradients' factor min(1, max_norm /
// (norm + 1e-6)), or 1 when max_norm <= 0 (off). AdamW::step applies it as it reads them, so the
// clipped gradients are never written.
float clip_coefficient(double norm, float max_norm);

}  // namespace mamba
