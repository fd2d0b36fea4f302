#include "kernels/cpu/embedding.h"

#include <algorithm>

namespace mamba::cpu {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int C) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* row = table + static_cast<int64_t>(ids[t]) * C;
    std::copy(row, row + C, out + t * C);
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int C) {
  // Repeated ids make rows of dtable shared between tokens. Splitting by channel block instead
  // gives every dtable element a single owner that adds its tokens in order t = 0..T-1, so the
  // sum is race-free and independent of the thread count. 16 floats fill one cache line.
  constexpr int kBlock = 16;
  const int blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    for (int64_t t = 0; t < T; ++t) {
      float* drow = dtable + static_cast<int64_t>(ids[t]) * C;
      const float* grow = dout + t * C;
      for (int c = c0; c < c1; ++c) drow[c] += grow[c];
    }
  }
}

}  // namespace mamba::cpu
