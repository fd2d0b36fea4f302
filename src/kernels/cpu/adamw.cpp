#include "kernels/cpu/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mamba::cpu {

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h) {
  // PyTorch computes the scalar factors in double (Python floats) and applies them in fp32.
  const double lr = h.lr;
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const float decay = static_cast<float>(1.0 - lr * h.weight_decay);
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float b1 = h.beta1;
  const float b2 = h.beta2;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * h.grad_scale;
    m[i] = b1 * m[i] + (1.0f - b1) * g;
    v[i] = b2 * v[i] + (1.0f - b2) * (g * g);
    const float denom = std::sqrt(v[i]) / bc2_sqrt + h.eps;
    param[i] = param[i] * decay - step_size * (m[i] / denom);
  }
}

void adamw_step(const AdamWStep& op, const AdamWHyper& h) {
  float* copy = ActCast<float>{"adamw_step"}(op.compute_copy, "compute_copy");
  if (copy == op.params) copy = nullptr;
  for (int s = 0; s < op.segment_count; ++s) {
    const AdamWSegment& seg = op.segments[s];
    AdamWHyper hs = h;
    if (!seg.weight_decay) hs.weight_decay = 0.0f;
    float* param = op.params + (op.packed_params ? seg.packed : seg.offset);
    adamw_update(param, op.grads + seg.offset, op.m + seg.packed, op.v + seg.packed, seg.count, hs);
    if (copy) std::copy_n(param, seg.count, copy + seg.offset);
  }
}

double sum_of_squares(const float* x, int64_t n) {
  // Fixed-size chunks summed in chunk order keep the result independent of the thread count.
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    double acc = 0.0;
    for (int64_t i = c * kChunk; i < end; ++i) acc += static_cast<double>(x[i]) * x[i];
    partial[c] = acc;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

double sum_of_squares(const float* x, const Span* spans, int count) {
  double total = 0.0;
  for (int s = 0; s < count; ++s) total += sum_of_squares(x + spans[s].offset, spans[s].count);
  return total;
}

}  // namespace mamba::cpu
