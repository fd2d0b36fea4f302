// Learning-rate schedule: linear warmup from 0 over `warmup` steps, then decay to min_lr at
// `total` steps (cosine or linear), or constant. Steps count from 0 (the first update uses step 0).
#pragma once
#include <cstdint>
#include <string>

namespace mamba {

enum class LrSchedule { kCosine, kLinear, kConstant };

struct LrScheduleSettings {
  float lr = 6e-4f, min_lr = 1e-5f;
  int64_t warmup = 0, total = 1;
  LrSchedule kind = LrSchedule::kCosine;
};

float learning_rate(const LrScheduleSettings& s, int64_t step);

}  // namespace mamba
