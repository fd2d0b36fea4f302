#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/adamw.h"

namespace mamba {

AdamW::AdamW(const ParamLayout& layout, const AdamWSettings& settings)
    : m(layout.total(), 0.0f), v(layout.total(), 0.0f), layout_(&layout), settings_(settings) {}

void AdamW::step(float* params, const float* grads, float lr) {
  ++steps_taken;
  for (const ParamTensor& t : layout_->tensors()) {
    const cpu::AdamWHyper h{lr, settings_.beta1, settings_.beta2, settings_.eps,
                            t.weight_decay ? settings_.weight_decay : 0.0f, steps_taken};
    cpu::adamw_update(params + t.offset, grads + t.offset, m.data() + t.offset,
                      v.data() + t.offset, t.numel, h);
  }
}

double clip_grad_norm(float* grads, int64_t n, float max_norm) {
  const double norm = std::sqrt(cpu::sum_of_squares(grads, n));
  if (max_norm > 0.0f) {
    const double coef = std::min(1.0, double(max_norm) / (norm + 1e-6));
    cpu::scale_inplace(grads, n, float(coef));
  }
  return norm;
}

}  // namespace mamba
