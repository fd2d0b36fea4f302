#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mamba::cpu {

namespace {

// Per-token losses are stored and summed in token order afterwards: an OpenMP reduction would
// add them in an order that depends on the thread count.
double sum_in_order(const std::vector<double>& losses) {
  double total = 0.0;
  for (double l : losses) total += l;
  return total;
}

// Max of a row, so that exp never overflows.
float row_max(const float* x, int Vp) {
  return *std::max_element(x, x + Vp);
}

}  // namespace

double cross_entropy_forward_backward(float* logits, const int32_t* targets, int64_t T, int Vp,
                                      float grad_scale) {
  if (T == 0) return 0.0;
  std::vector<double> losses(T);
  const float scale = grad_scale / static_cast<float>(T);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* x = logits + t * Vp;
    const float mx = row_max(x, Vp);
    const float target_logit = x[targets[t]];
    double sum = 0.0;
    for (int v = 0; v < Vp; ++v) {
      x[v] = std::exp(x[v] - mx);
      sum += x[v];
    }
    losses[t] = std::log(sum) + mx - target_logit;
    const float k = static_cast<float>(scale / sum);
    for (int v = 0; v < Vp; ++v) x[v] *= k;
    x[targets[t]] -= scale;
  }
  return sum_in_order(losses) / static_cast<double>(T);
}

double cross_entropy_forward(const float* logits, const int32_t* targets, int64_t T, int Vp) {
  if (T == 0) return 0.0;
  std::vector<double> losses(T);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* x = logits + t * Vp;
    const float mx = row_max(x, Vp);
    double sum = 0.0;
    for (int v = 0; v < Vp; ++v) sum += std::exp(x[v] - mx);
    losses[t] = std::log(sum) + mx - x[targets[t]];
  }
  return sum_in_order(losses) / static_cast<double>(T);
}

}  // namespace mamba::cpu
