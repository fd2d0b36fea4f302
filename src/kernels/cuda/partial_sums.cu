// Column sums of a partial-sum matrix; see partial_sums.h. A block covers 8 columns with 32 row
// groups: group g adds rows g, g + 32, ..., then the groups' sums are added in group order. A warp
// reads 8 consecutive floats (one 32-byte sector) of 4 rows. 8 columns a block rather than 32, so
// that a few hundred columns (rmsnorm's C) still reach most SMs: with 32, C = 768 gave 24 blocks
// for 132 SMs, each thread adding 64 of rmsnorm's 2048 partials in turn at 130M.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/partial_sums.h"

namespace mamba::cuda {

namespace {

constexpr int kCols = 8;
constexpr int kGroups = 32;

__global__ void add_column_sums_kernel(float* out, const float* partial, int64_t rows, int64_t cols,
                                       int64_t ld) {
  __shared__ double sums[kGroups][kCols + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kCols + threadIdx.x;
  double s = 0.0;
  if (c < cols) {
    for (int64_t r = threadIdx.y; r < rows; r += kGroups) s += partial[r * ld + c];
  }
  sums[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y != 0 || c >= cols) return;
  double total = 0.0;
  for (int g = 0; g < kGroups; ++g) total += sums[g][threadIdx.x];
  out[c] += static_cast<float>(total);
}

}  // namespace

void add_column_sums(float* out, const float* partial, int64_t rows, int64_t cols, int64_t ld,
                     cudaStream_t stream) {
  if (cols == 0) return;
  const auto blocks = static_cast<unsigned>((cols + kCols - 1) / kCols);
  add_column_sums_kernel<<<blocks, dim3(kCols, kGroups), 0, stream>>>(out, partial, rows, cols, ld);
  check_launch("add_column_sums_kernel");
}

}  // namespace mamba::cuda
