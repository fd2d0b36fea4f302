// Column sums of a partial-sum matrix; see partial_sums.h. A block covers 32 columns with 32 row
// groups: group g adds rows g, g + 32, ... (each warp reads 32 consecutive floats of one row), then
// the groups' sums are added in group order.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/partial_sums.h"

namespace mamba::cuda {

namespace {

constexpr int kCols = 32;
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
