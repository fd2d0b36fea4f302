// Residual add + RMSNorm forward and backward; math in kernels/cpu/rmsnorm.h, layout in rmsnorm.h.
//
// Forward: one warp per token row (C is a few thousand at most, so a warp's 32 lanes stride the
// row in coalesced 128-byte steps), the row sum of squares by warp shuffles. With few rows
// (decoding: one per sequence) a warp per row would leave the device idle and walk its row one
// dependent load after another (residual_out may alias residual_in, so loads cannot be hoisted
// over the stores): then one block per row, the row in registers, all loads issued at once.
// Backward: two kernels, both bound by memory and with enough blocks to fill the device at any
// row count. dresidual: one warp per row, as the forward (each row needs only its own dot
// product). dweight: a thread per channel walks a tile of kRowsPerTile rows (coalesced across the
// channels), writing the tile's partial sum; add_column_sums then adds the tiles' partials in a
// fixed order. (One kernel doing both, a block per tile, left the device mostly idle: at 1.4B, 128
// blocks for 132 SMs, a block barrier per row.)
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/partial_sums.h"
#include "kernels/cuda/rmsnorm.h"

namespace mamba::cuda {

namespace {

constexpr int kRowsPerBlock = 8;     // forward: one warp per row
constexpr int64_t kFewRows = 64;     // forward: up to this, a block per row
constexpr int kRowThreads = 256;     // that block
constexpr int kRowValues = 16;       // per thread: C up to 4096
constexpr int kColumnThreads = 256;  // backward dweight: channels per block
constexpr int kRowsPerTile = 64;     // backward dweight: rows per partial sum

int64_t tiles_for(int64_t rows) {
  return (rows + kRowsPerTile - 1) / kRowsPerTile;
}

template <typename T>
__global__ void residual_rmsnorm_forward_kernel(float* residual_out, T* normed, float* rstd,
                                                const float* hidden, const float* residual_in,
                                                const float* weight, int64_t rows, int C,
                                                float eps) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (t >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* h = hidden + t * C;
  const float* res = residual_in ? residual_in + t * C : nullptr;
  float* r = residual_out ? residual_out + t * C : nullptr;
  float ss = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float v = res ? h[c] + res[c] : h[c];
    if (r) r[c] = v;
    ss += v * v;
  }
  ss = warp_sum(ss);
  const float inv = rsqrtf(ss / C + eps);
  if (lane == 0) rstd[t] = inv;
  T* out = normed + t * C;
  for (int c = lane; c < C; c += 32) {
    const float v = r ? r[c] : res ? h[c] + res[c] : h[c];
    out[c] = from_f32<T>(v * inv * weight[c]);
  }
}

template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    residual_rmsnorm_row_kernel(float* residual_out, T* normed, float* rstd, const float* hidden,
                                const float* residual_in, const float* weight, int C, float eps) {
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const float* h = hidden + t * C;
  const float* res = residual_in ? residual_in + t * C : nullptr;
  float v[kRowValues];
#pragma unroll
  for (int i = 0; i < kRowValues; ++i) {
    const int c = threadIdx.x + i * kRowThreads;
    v[i] = c < C ? (res ? h[c] + res[c] : h[c]) : 0.0f;
  }
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kRowValues; ++i) ss += v[i] * v[i];
  // Every read of the row is done before block_sum's barriers, every write after: residual_out
  // may be residual_in.
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / C + eps);
  if (threadIdx.x == 0) rstd[t] = inv;
  float* r = residual_out ? residual_out + t * C : nullptr;
  T* out = normed + t * C;
#pragma unroll
  for (int i = 0; i < kRowValues; ++i) {
    const int c = threadIdx.x + i * kRowThreads;
    if (c < C) {
      if (r) r[c] = v[i];
      out[c] = from_f32<T>(v[i] * inv * weight[c]);
    }
  }
}

// d(x_c * r * w_c)/dx_j = r * w_c * [c == j] - x_c * w_c * x_j * r^3 / C, r = rstd.
template <typename T>
__global__ void rmsnorm_backward_rows_kernel(float* dresidual, T* dresidual_act, const T* dnormed,
                                             const float* residual_out, const float* rstd,
                                             const float* weight, int64_t rows, int C) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (t >= rows) return;
  const int lane = threadIdx.x % 32;
  const float* x = residual_out + t * C;
  const T* g = dnormed + t * C;
  const float r = rstd[t];
  float dot = 0.0f;
#pragma unroll 4
  for (int c = lane; c < C; c += 32) dot += to_f32(g[c]) * weight[c] * x[c];
  const float k = warp_sum(dot) * r * r * r / C;
  float* dx = dresidual + t * C;
  T* dx_act = dresidual_act ? dresidual_act + t * C : nullptr;
#pragma unroll 4
  for (int c = lane; c < C; c += 32) {
    const float v = dx[c] + (r * weight[c] * to_f32(g[c]) - k * x[c]);
    dx[c] = v;
    if (dx_act) dx_act[c] = from_f32<T>(v);
  }
}

// partial[tile * C + c] = sum over the tile's rows t, in order, of dnormed[t, c] x[t, c] r[t].
template <typename T>
__global__ void rmsnorm_dweight_partials_kernel(float* partial, const T* dnormed,
                                                const float* residual_out, const float* rstd,
                                                int64_t rows, int C) {
  const int c = blockIdx.y * kColumnThreads + threadIdx.x;
  if (c >= C) return;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kRowsPerTile;
  const int64_t t1 = min(rows, t0 + kRowsPerTile);
  float acc = 0.0f;
#pragma unroll 8
  for (int64_t t = t0; t < t1; ++t)
    acc += to_f32(dnormed[t * C + c]) * residual_out[t * C + c] * rstd[t];
  partial[static_cast<int64_t>(blockIdx.x) * C + c] = acc;
}

}  // namespace

template <typename T>
void residual_rmsnorm_forward(float* residual_out, T* normed, float* rstd, const float* hidden,
                              const float* residual_in, const float* weight, int64_t rows, int C,
                              float eps, cudaStream_t stream) {
  if (rows == 0) return;
  if (rows <= kFewRows && C <= kRowThreads * kRowValues) {
    residual_rmsnorm_row_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(
        residual_out, normed, rstd, hidden, residual_in, weight, C, eps);
    check_launch("residual_rmsnorm_row_kernel");
    return;
  }
  const auto blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  residual_rmsnorm_forward_kernel<T><<<blocks, kRowsPerBlock * 32, 0, stream>>>(
      residual_out, normed, rstd, hidden, residual_in, weight, rows, C, eps);
  check_launch("residual_rmsnorm_forward_kernel");
}

size_t rmsnorm_backward_workspace_bytes(int64_t rows, int C) {
  return static_cast<size_t>(tiles_for(rows)) * C * sizeof(float);
}

template <typename T>
void rmsnorm_backward(float* dresidual, T* dresidual_act, float* dweight, const T* dnormed,
                      const float* residual_out, const float* rstd, const float* weight,
                      int64_t rows, int C, void* workspace, cudaStream_t stream) {
  if (rows == 0) return;
  // fp32 activations: the copy would be dresidual itself.
  if (static_cast<void*>(dresidual_act) == static_cast<void*>(dresidual)) dresidual_act = nullptr;
  const auto row_blocks = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  rmsnorm_backward_rows_kernel<T><<<row_blocks, kRowsPerBlock * 32, 0, stream>>>(
      dresidual, dresidual_act, dnormed, residual_out, rstd, weight, rows, C);
  check_launch("rmsnorm_backward_rows_kernel");
  const int64_t tiles = tiles_for(rows);
  float* partial = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>(tiles), (C + kColumnThreads - 1) / kColumnThreads);
  rmsnorm_dweight_partials_kernel<T>
      <<<grid, kColumnThreads, 0, stream>>>(partial, dnormed, residual_out, rstd, rows, C);
  check_launch("rmsnorm_dweight_partials_kernel");
  add_column_sums(dweight, partial, tiles, C, C, stream);
}

template void residual_rmsnorm_forward<float>(float*, float*, float*, const float*, const float*,
                                              const float*, int64_t, int, float, cudaStream_t);
template void residual_rmsnorm_forward<bf16>(float*, bf16*, float*, const float*, const float*,
                                             const float*, int64_t, int, float, cudaStream_t);
template void rmsnorm_backward<float>(float*, float*, float*, const float*, const float*,
                                      const float*, const float*, int64_t, int, void*,
                                      cudaStream_t);
template void rmsnorm_backward<bf16>(float*, bf16*, float*, const bf16*, const float*, const float*,
                                     const float*, int64_t, int, void*, cudaStream_t);

}  // namespace mamba::cuda
