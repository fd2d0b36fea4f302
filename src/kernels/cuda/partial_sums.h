// The second level of the backend's deterministic reductions: kernels write per-tile partial sums
// (a [rows, cols] fp32 matrix, one row per tile) and this adds their column sums into the result,
// accumulated in double in a fixed order, so results are bit-identical from run to run.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mamba::cuda {

// out[c] += sum_r partial[r * ld + c] for c < cols.
void add_column_sums(float* out, const float* partial, int64_t rows, int64_t cols, int64_t ld,
                     cudaStream_t stream);

}  // namespace mamba::cuda
