// The value of element i of a tensor being initialised (InitFill, kernels/ops.h): the one
// implementation that the CPU kernel (cpu/init_fill.cpp) and the CUDA kernel (cuda/init_fill.cu)
// both run, so the two fill bit-identical tensors. It draws counter-based random numbers
// (util/counter_rng.h) and transforms them with exact operations or util/repro_math.h, in
// double; the one rounding to float comes last. Nonzero draws are at least 2^-52 in size, so with
// a scale `value` above 1e-22 no result is a subnormal float, which the CUDA build would flush to
// zero and the host would not; the model's scales are 1e-3 and up.
#pragma once
#include <cstdint>

#include "kernels/ops.h"
#include "util/counter_rng.h"
#include "util/host_device.h"
#include "util/repro_math.h"

namespace mamba {

// key: stream_key(f.seed, f.stream), computed once per tensor.
MAMBA_HOST_DEVICE inline float init_element(const InitFill& f, uint64_t key, int64_t i) {
  switch (f.kind) {
    case InitKind::Constant:
      return float(f.value);
    case InitKind::Normal:
      return float(f.value * draw_normal(counter_draw(key, uint64_t(i))));
    case InitKind::Uniform:
      return float(f.value * draw_symmetric(counter_draw(key, uint64_t(i))));
    case InitKind::LogIndex:
      return float(repro::log(double(1 + i % f.period)));
    case InitKind::InvSoftplus: {
      const double u = draw_unit(counter_draw(key, uint64_t(i)));
      double dt = repro::exp(fma(f.log_hi - f.log_lo, u, f.log_lo));
      if (dt < f.floor) dt = f.floor;
      return float(repro::log(repro::expm1(dt)));
    }
  }
  return 0.0f;
}

}  // namespace mamba
