// AdamW with decoupled weight decay, PyTorch semantics (torch.optim.AdamW, foreach=False):
//   param *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g^2
//   param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// over n contiguous elements; step counts from 1. A whole step (Backend::adamw_step) is this
// update on each segment in turn, weight decay 0 on those outside the decay group, then the
// compute copy takes the new weights.
#pragma once
#include <cstdint>

#include "kernels/ops.h"

namespace mamba::cpu {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h);
// The CPU's compute copy is fp32: where it does not alias the parameters, it receives a copy.
void adamw_step(const AdamWStep& op, const AdamWHyper& h);

// Sum of squares of n floats, accumulated in double (for the global gradient norm).
double sum_of_squares(const float* x, int64_t n);
// The same over spans[0..count) of x: each span's sum as above, added in span order in double.
double sum_of_squares(const float* x, const Span* spans, int count);

}  // namespace mamba::cpu
