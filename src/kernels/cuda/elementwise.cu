// Elementwise fp32 ops and the sum of squares; math in elementwise.h. Grid-stride loops with
// 64-bit indices: the flat parameter and gradient buffers exceed 2^31 elements at the 1.4B size
// and above.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
// The sum of squares always uses this many blocks, whatever the device, so the partition of the
// elements (and with it every rounding) is fixed.
constexpr int kSsqBlocks = 1024;

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

__global__ void to_bf16_kernel(bf16* dst, const float* src, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = __float2bfloat16(src[i]);
}

__global__ void from_bf16_kernel(float* dst, const bf16* src, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] = __bfloat162float(src[i]);
}

__global__ void negative_exp_kernel(float* out, const float* in, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) out[i] = -expf(in[i]);
}

__global__ void mul_accumulate_kernel(float* dst, const float* a, const float* b, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) dst[i] += a[i] * b[i];
}

__global__ void scale_kernel(float* x, int64_t n, float s) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) x[i] *= s;
}

__global__ void sum_of_squares_partial_kernel(double* partial, const float* x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block of kSsqBlocks threads, one partial each.
__global__ void sum_of_squares_final_kernel(double* result, const double* partial) {
  __shared__ double scratch[32];
  const double total = block_sum(partial[threadIdx.x], scratch);
  if (threadIdx.x == 0) *result = total;
}

}  // namespace

void to_bf16(bf16* dst, const float* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  to_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dst, src, n);
  check_launch("to_bf16_kernel");
}

void from_bf16(float* dst, const bf16* src, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  from_bf16_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dst, src, n);
  check_launch("from_bf16_kernel");
}

void negative_exp(float* out, const float* in, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  negative_exp_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(out, in, n);
  check_launch("negative_exp_kernel");
}

void mul_accumulate(float* dst, const float* a, const float* b, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  mul_accumulate_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(dst, a, b, n);
  check_launch("mul_accumulate_kernel");
}

void scale(float* x, int64_t n, float s, cudaStream_t stream) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(x, n, s);
  check_launch("scale_kernel");
}

size_t sum_of_squares_workspace_bytes() {
  return kSsqBlocks * sizeof(double);
}

void sum_of_squares(double* result, const float* x, int64_t n, void* workspace,
                    cudaStream_t stream) {
  double* partial = static_cast<double*>(workspace);
  sum_of_squares_partial_kernel<<<kSsqBlocks, kThreads, 0, stream>>>(partial, x, n);
  check_launch("sum_of_squares_partial_kernel");
  sum_of_squares_final_kernel<<<1, kSsqBlocks, 0, stream>>>(result, partial);
  check_launch("sum_of_squares_final_kernel");
}

}  // namespace mamba::cuda
