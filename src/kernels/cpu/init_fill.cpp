#include "kernels/cpu/init_fill.h"

#include "kernels/init_element.h"

namespace mamba::cpu {

void init_fill(const InitFill& f) {
  const uint64_t key = stream_key(f.seed, f.stream);
  // Every element is independent of the others: any split over threads gives the same bits.
#pragma omp parallel for schedule(static) if (f.n >= 16384)
  for (int64_t i = 0; i < f.n; ++i) f.dst[i] = init_element(f, key, i);
}

}  // namespace mamba::cpu
