#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace mamba {

float learning_rate(const LrScheduleSettings& s, int64_t step) {
  if (step < s.warmup) return s.lr * float(step + 1) / float(s.warmup);
  if (s.kind == LrSchedule::kConstant) return s.lr;
  const int64_t decay_steps = std::max<int64_t>(1, s.total - s.warmup);
  const double progress = std::min(1.0, double(step - s.warmup) / double(decay_steps));
  const double shape = s.kind == LrSchedule::kCosine ? 0.5 * (1.0 + std::cos(M_PI * progress))
                                                     : 1.0 - progress;
  return float(s.min_lr + (s.lr - s.min_lr) * shape);
}

}  // namespace mamba
