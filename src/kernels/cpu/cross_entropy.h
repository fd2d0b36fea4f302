// Mean cross-entropy over T tokens with logits over the padded vocab Vp, fused with its backward:
//   loss = (1/T) sum_t [ logsumexp(logits[t, :]) - logits[t, targets[t]] ]
// On return logits[t, :] is overwritten by dloss/dlogits = (softmax(logits[t]) - onehot) / T
// scaled by `grad_scale` (so gradient accumulation can fold in its 1/steps).
// Returns the mean loss (accumulated in double). Targets must be in [0, Vp).
#pragma once
#include <cstdint>

namespace mamba::cpu {

double cross_entropy_forward_backward(float* logits, const int32_t* targets, int64_t T, int Vp,
                                      float grad_scale);
// Forward only (evaluation): the mean loss, logits untouched.
double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t T, int Vp);

}  // namespace mamba::cpu
