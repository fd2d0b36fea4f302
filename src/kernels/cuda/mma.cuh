// Tensor-core helpers shared by the kernels that multiply bf16 tiles: the m16n8k16 MMA with fp32
// sums, and ldmatrix, which forms its fragments from shared memory. In m16n8k16, lane (g = lane /
// 4, q = lane % 4) holds A's rows g and g + 8 at k 2q, 2q + 1 and 2q + 8, 2q + 9 (a0 .. a3: row g,
// row g + 8, then the same at k + 8), B's column g at the same k (b0, b1: two bf16 each, the lower
// k in the low half), and D's rows g and g + 8 at columns 2q, 2q + 1. Included by .cu files only.
#pragma once
#include <cstdint>

namespace mamba::cuda {

__device__ __forceinline__ void mma_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  __trap();  // hosts launch MMA kernels on compute capability 8.0 or more only
#endif
}

// Four 8 x 8 matrices of 16-bit values from shared memory: lanes 8j .. 8j + 7 give the addresses
// of matrix j's rows; lane l receives in r[j] row l / 4, values 2 (l % 4) and 2 (l % 4) + 1 of
// matrix j. For an m16k16 A tile stored row-major, lane l points at row l % 16, k (l / 16) * 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* shared) {
  const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(shared));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

}  // namespace mamba::cuda
