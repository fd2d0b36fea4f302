// Elementwise fp32 ops and the sum of squares over spans; math in elementwise.h. Grid-stride loops
// with 64-bit indices: the flat parameter and gradient buffers exceed 2^31 elements at the 1.4B
// size and above.
#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
// The sum of squares cuts every span as a grid of this many blocks would, whatever the device, so
// the partition of the elements (and with it every rounding) is fixed.
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

// A span's place in the workspace: its blocks (those of the fixed grid that have elements of
// it) write their partial sums at [first_partial, first_partial + blocks).
struct SquareSumSpan {
  int64_t offset, count, first_partial, blocks;
};

// Block (b, s) sums the elements b * kThreads + threadIdx.x + k * kSsqBlocks * kThreads of span
// s: the grid-stride partition of a kSsqBlocks-block grid over the span alone.
__global__ void span_partials_kernel(double* partial, const float* x, const SquareSumSpan* spans,
                                     int first_span) {
  __shared__ double scratch[32];
  const SquareSumSpan s = spans[first_span + blockIdx.y];
  if (blockIdx.x >= s.blocks) return;  // the whole block: it starts past the span's end
  const float* xs = x + s.offset;
  constexpr int64_t stride = int64_t{kSsqBlocks} * kThreads;
  double acc = 0.0;
  for (int64_t i = int64_t{blockIdx.x} * kThreads + threadIdx.x; i < s.count; i += stride) {
    const double v = xs[i];
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[s.first_partial + blockIdx.x] = acc;
}

// Block s, kSsqBlocks threads: span s's partials in one fixed tree, the blocks without elements
// counting 0.
__global__ void span_sums_kernel(double* span_sum, const double* partial,
                                 const SquareSumSpan* spans) {
  __shared__ double scratch[32];
  const SquareSumSpan s = spans[blockIdx.x];
  const double v = threadIdx.x < s.blocks ? partial[s.first_partial + threadIdx.x] : 0.0;
  const double total = block_sum(v, scratch);
  if (threadIdx.x == 0) span_sum[blockIdx.x] = total;
}

// One thread: the spans' sums in span order.
__global__ void add_in_order_kernel(double* result, const double* span_sum, int count) {
  double total = 0.0;
  for (int s = 0; s < count; ++s) total += span_sum[s];
  *result = total;
}

// The table of the spans and the number of partial sums they need.
std::vector<SquareSumSpan> span_table(const Span* spans, int count, int64_t& partials) {
  std::vector<SquareSumSpan> table(count);
  partials = 0;
  for (int s = 0; s < count; ++s) {
    const int64_t blocks =
        std::min<int64_t>(kSsqBlocks, (spans[s].count + kThreads - 1) / kThreads);
    table[s] = {spans[s].offset, spans[s].count, partials, blocks};
    partials += blocks;
  }
  return table;
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

// Workspace: the table, the partial sums, the spans' sums.
size_t sum_of_squares_workspace_bytes(const Span* spans, int count) {
  int64_t partials = 0;
  span_table(spans, count, partials);
  return count * sizeof(SquareSumSpan) + size_t(partials + count) * sizeof(double);
}

void sum_of_squares(double* result, const float* x, const Span* spans, int count, void* workspace,
                    cudaStream_t stream) {
  if (count == 0) {
    check_cuda(cudaMemsetAsync(result, 0, sizeof(double), stream), "cudaMemsetAsync");
    return;
  }
  int64_t partials = 0;
  const std::vector<SquareSumSpan> table = span_table(spans, count, partials);
  auto* device_table = static_cast<SquareSumSpan*>(workspace);
  double* partial = reinterpret_cast<double*>(device_table + count);
  double* span_sum = partial + partials;
  // From pageable memory: the call returns once the bytes are staged, so `table` may go.
  check_cuda(cudaMemcpyAsync(device_table, table.data(), count * sizeof(SquareSumSpan),
                             cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync (sum_of_squares spans)");
  int64_t widest = 1;
  for (const SquareSumSpan& s : table) widest = std::max(widest, s.blocks);
  constexpr int kMaxGridY = 65535;
  for (int first = 0; first < count; first += kMaxGridY) {
    const dim3 grid(unsigned(widest), unsigned(std::min(kMaxGridY, count - first)));
    span_partials_kernel<<<grid, kThreads, 0, stream>>>(partial, x, device_table, first);
    check_launch("span_partials_kernel");
  }
  span_sums_kernel<<<count, kSsqBlocks, 0, stream>>>(span_sum, partial, device_table);
  check_launch("span_sums_kernel");
  add_in_order_kernel<<<1, 1, 0, stream>>>(result, span_sum, count);
  check_launch("add_in_order_kernel");
}

}  // namespace mamba::cuda
