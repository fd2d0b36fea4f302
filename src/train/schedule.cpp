#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace mamba {

float learning_rate(const OptimConfig& o, int64_t total_steps, int64_t step) {
  if (step < o.warmup) return float(o.lr * double(step + 1) / double(o.warmup));
  if (o.schedule == Schedule::Constant) return float(o.lr);
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - o.warmup);
  const double progress = std::min(1.0, double(step - o.warmup) / double(decay_steps));
  const double shape =
      o.schedule == Schedule::Cosine ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return float(o.min_lr + (o.lr - o.min_lr) * shape);
}

}  // namespace mamba
