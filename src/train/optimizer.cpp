#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

namespace mamba {

AdamW::AdamW(const ParamLayout& layout, Backend& backend, const AdamWSettings& settings)
    : layout_(layout), be_(backend), settings_(settings) {
  const size_t bytes = layout.total() * sizeof(float);
  m_ = static_cast<float*>(be_.allocate(bytes));
  v_ = static_cast<float*>(be_.allocate(bytes));
  be_.fill_zero(m_, bytes);
  be_.fill_zero(v_, bytes);
}

AdamW::~AdamW() {
  be_.release(m_);
  be_.release(v_);
}

void AdamW::step(float* params, const float* grads, float lr) {
  ++steps_taken;
  for (const ParamTensor& t : layout_.tensors()) {
    const AdamWHyper h{lr,
                       settings_.beta1,
                       settings_.beta2,
                       settings_.eps,
                       t.weight_decay ? settings_.weight_decay : 0.0f,
                       steps_taken};
    be_.adamw_update({params + t.offset, grads + t.offset, m_ + t.offset, v_ + t.offset, t.numel},
                     h);
  }
}

std::vector<float> AdamW::download(const float* moment) const {
  std::vector<float> host(layout_.total());
  be_.download(host.data(), moment, host.size() * sizeof(float));
  return host;
}

void AdamW::zero_moments() {
  be_.fill_zero(m_, layout_.total() * sizeof(float));
  be_.fill_zero(v_, layout_.total() * sizeof(float));
  steps_taken = 0;
}

double clip_grad_norm(Backend& backend, float* grads, int64_t n, float max_norm) {
  const double norm = std::sqrt(backend.sum_of_squares(grads, n));
  if (max_norm > 0.0f) {
    const double coef = std::min(1.0, double(max_norm) / (norm + 1e-6));
    backend.scale(grads, n, float(coef));
  }
  return norm;
}

}  // namespace mamba
