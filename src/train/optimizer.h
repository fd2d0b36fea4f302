// AdamW over the flat parameter buffer, with the design.md §1 weight-decay groups, and global
// gradient-norm clipping with PyTorch's clip_grad_norm_ semantics. Moments are fp32 buffers on
// the backend's device with the parameter layout, so checkpoints store them as they are.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "model/params.h"

namespace mamba {

struct AdamWSettings {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

class AdamW {
 public:
  AdamW(const ParamLayout& layout, Backend& backend, const AdamWSettings& settings);
  ~AdamW();
  AdamW(const AdamW&) = delete;
  AdamW& operator=(const AdamW&) = delete;

  // One update with learning rate lr; weight decay only on tensors whose layout says so.
  void step(float* params, const float* grads, float lr);

  // Host copies of the moments (synchronous checkpoints).
  std::vector<float> download_m() const { return download(m_); }
  std::vector<float> download_v() const { return download(v_); }
  // The moments on the device: checkpoints snapshot them and load into them.
  float* moment_m() { return m_; }
  float* moment_v() { return v_; }
  // Back to the state of a fresh run (after a failed load wrote into them).
  void zero_moments();

  int64_t steps_taken = 0;

 private:
  std::vector<float> download(const float* moment) const;

  const ParamLayout& layout_;
  Backend& be_;
  AdamWSettings settings_;
  float* m_;
  float* v_;
};

// The global L2 norm of grads (accumulated in double) before clipping. When max_norm > 0 every
// gradient is multiplied by min(1, max_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_.
double clip_grad_norm(Backend& backend, float* grads, int64_t n, float max_norm);

}  // namespace mamba
