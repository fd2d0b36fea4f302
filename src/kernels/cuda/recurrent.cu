// Recurrent (generation) mode: math in kernels/cpu/recurrent.h, layout in recurrent.h.
//
// Conv step: one thread per (sequence, channel) with its K-1 inputs of state in registers.
// Scan step: 4 consecutive threads per (sequence, channel), each with 4 of its 16 states, so that
// the state rows [d_state] and A's rows are read and written 16 bytes a thread in coalesced runs
// (with one state a thread, too few bytes were in flight to reach the memory's bandwidth at
// batch 16); C . h is a sum over the 4 lanes by shuffles. Argmax: one block of 1024 threads per
// row.
#include "kernels/cuda/act_type.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/recurrent.h"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kN = 16;          // d_state
constexpr int kStateLanes = 4;  // threads per channel in the scan step, kN / 4 states each
constexpr int kArgmaxThreads = 1024;
constexpr int kArgmaxUnroll = 4;

__device__ __forceinline__ float silu(float x) {
  return x / (1.0f + expf(-x));
}
// PyTorch's F.softplus (threshold 20); log1pf keeps its precision under fast math.
__device__ __forceinline__ float softplus(float x) {
  return x > 20.0f ? x : log1pf(expf(x));
}

template <typename T, int K>
__global__ void conv1d_silu_step_kernel(T* out, float* state, const T* x, int64_t ld_x,
                                        const float* weight, const float* bias, int batch, int D) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(batch) * D) return;
  const int64_t b = i / D;
  const int d = static_cast<int>(i % D);
  float* st = state + i * (K - 1);
  float win[K];
  for (int k = 0; k < K - 1; ++k) win[k] = st[k];
  win[K - 1] = to_f32(x[b * ld_x + d]);
  float pre = bias[d];
  for (int k = 0; k < K; ++k) pre += weight[d * K + k] * win[k];
  for (int k = 0; k < K - 1; ++k) st[k] = win[k + 1];
  out[i] = from_f32<T>(silu(pre));
}

template <typename T>
__global__ void selective_scan_step_kernel(T* out, float* ssm_state, const T* u, const T* delta,
                                           const T* B, const T* C, const T* z, const float* A,
                                           const float* Dskip, const float* delta_bias, int batch,
                                           int d_inner, int64_t ld_bc, int64_t ld_z) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t row = i / kStateLanes;  // b * d_inner + d
  const int q = static_cast<int>(i % kStateLanes);
  // Whole groups of lanes leave together, so the shuffles below see full groups.
  if (row >= static_cast<int64_t>(batch) * d_inner) return;
  const int64_t b = row / d_inner;
  const int d = static_cast<int>(row % d_inner);
  const float dt = softplus(to_f32(delta[row]) + delta_bias[d]);
  const float ud = to_f32(u[row]);
  float4* h = reinterpret_cast<float4*>(ssm_state + row * kN) + q;
  const float4 a = reinterpret_cast<const float4*>(A + int64_t(d) * kN)[q];
  const float4 h0 = *h;
  const T* Bq = B + b * ld_bc + 4 * q;
  const T* Cq = C + b * ld_bc + 4 * q;
  const float4 hn = make_float4(expf(dt * a.x) * h0.x + dt * to_f32(Bq[0]) * ud,
                                expf(dt * a.y) * h0.y + dt * to_f32(Bq[1]) * ud,
                                expf(dt * a.z) * h0.z + dt * to_f32(Bq[2]) * ud,
                                expf(dt * a.w) * h0.w + dt * to_f32(Bq[3]) * ud);
  *h = hn;
  float y =
      to_f32(Cq[0]) * hn.x + to_f32(Cq[1]) * hn.y + to_f32(Cq[2]) * hn.z + to_f32(Cq[3]) * hn.w;
  const unsigned group = 0xfu << (threadIdx.x % 32 / kStateLanes * kStateLanes);
  for (int offset = kStateLanes / 2; offset > 0; offset >>= 1) {
    y += __shfl_xor_sync(group, y, offset, kStateLanes);
  }
  if (q == 0) out[row] = from_f32<T>((y + Dskip[d] * ud) * silu(to_f32(z[b * ld_z + d])));
}

// Ties go to the lower index, as a left-to-right scan would pick.
__device__ __forceinline__ void keep_best(float& v, int& at, float v2, int at2) {
  if (v2 > v || (v2 == v && at2 < at)) {
    v = v2;
    at = at2;
  }
}

__global__ void argmax_rows_kernel(int32_t* out, const float* x, int n, int64_t ld) {
  __shared__ float best_v[32];
  __shared__ int best_at[32];
  const float* row = x + blockIdx.x * ld;
  float v = -INFINITY;
  int at = n;
  // kArgmaxUnroll independent loads in flight per thread: a row is read by one block, whose
  // latency would otherwise be a load's per step of the loop.
  for (int i0 = threadIdx.x; i0 < n; i0 += kArgmaxUnroll * blockDim.x) {
    float x[kArgmaxUnroll];
#pragma unroll
    for (int u = 0; u < kArgmaxUnroll; ++u) {
      const int i = i0 + u * blockDim.x;
      x[u] = i < n ? row[i] : -INFINITY;
    }
#pragma unroll
    for (int u = 0; u < kArgmaxUnroll; ++u) keep_best(v, at, x[u], i0 + u * blockDim.x);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    keep_best(v, at, __shfl_xor_sync(0xffffffffu, v, offset),
              __shfl_xor_sync(0xffffffffu, at, offset));
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) {
    best_v[warp] = v;
    best_at[warp] = at;
  }
  __syncthreads();
  if (warp != 0) return;
  const int warps = blockDim.x / 32;
  v = lane < warps ? best_v[lane] : -INFINITY;
  at = lane < warps ? best_at[lane] : n;
  for (int offset = 16; offset > 0; offset >>= 1) {
    keep_best(v, at, __shfl_xor_sync(0xffffffffu, v, offset),
              __shfl_xor_sync(0xffffffffu, at, offset));
  }
  // A row of NaNs leaves no candidate: index 0, as the CPU's scan would.
  if (lane == 0) out[blockIdx.x] = at < n ? at : 0;
}

}  // namespace

template <typename T>
void conv1d_silu_step(T* out, float* state, const T* x, int64_t ld_x, const float* weight,
                      const float* bias, int batch, int D, int K, cudaStream_t stream) {
  const int64_t n = static_cast<int64_t>(batch) * D;
  if (n == 0) return;
  const unsigned blocks = static_cast<unsigned>((n + kThreads - 1) / kThreads);
  switch (K) {
    case 2:
      conv1d_silu_step_kernel<T, 2>
          <<<blocks, kThreads, 0, stream>>>(out, state, x, ld_x, weight, bias, batch, D);
      break;
    case 3:
      conv1d_silu_step_kernel<T, 3>
          <<<blocks, kThreads, 0, stream>>>(out, state, x, ld_x, weight, bias, batch, D);
      break;
    case 4:
      conv1d_silu_step_kernel<T, 4>
          <<<blocks, kThreads, 0, stream>>>(out, state, x, ld_x, weight, bias, batch, D);
      break;
    default:
      throw_error("op error: conv1d_silu_step: d_conv = ", K,
                  " but the CUDA kernel takes 2, 3 or 4");
  }
  check_launch("conv1d_silu_step_kernel");
}

template <typename T>
void selective_scan_step(const ScanShape& s, const ScanInputs& in, T* out, float* ssm_state,
                         cudaStream_t stream) {
  if (s.d_state != kN) {
    throw_error("op error: selective_scan_step: d_state = ", s.d_state,
                " but the CUDA kernel takes ", kN);
  }
  if (reinterpret_cast<uintptr_t>(in.A) % 16 != 0 || reinterpret_cast<uintptr_t>(ssm_state) % 16) {
    throw_error(
        "op error: selective_scan_step: A and ssm_state must start on 16-byte boundaries "
        "(the kernel reads 4 states at a time)");
  }
  const ActCast<T> act{"selective_scan_step"};
  const int64_t threads = static_cast<int64_t>(s.batch) * s.d_inner * kStateLanes;
  if (threads == 0) return;
  const unsigned blocks = static_cast<unsigned>((threads + kThreads - 1) / kThreads);
  selective_scan_step_kernel<T><<<blocks, kThreads, 0, stream>>>(
      out, ssm_state, act(in.u, "u"), act(in.delta, "delta"), act(in.B, "B"), act(in.C, "C"),
      act(in.z, "z"), in.A, in.D, in.delta_bias, s.batch, s.d_inner, s.ld_bc, s.ld_z);
  check_launch("selective_scan_step_kernel");
}

void argmax_rows(const ArgmaxRows& op, cudaStream_t stream) {
  if (op.rows == 0) return;
  argmax_rows_kernel<<<op.rows, kArgmaxThreads, 0, stream>>>(op.out, op.x, op.n, op.ld);
  check_launch("argmax_rows_kernel");
}

template void conv1d_silu_step<float>(float*, float*, const float*, int64_t, const float*,
                                      const float*, int, int, int, cudaStream_t);
template void conv1d_silu_step<bf16>(bf16*, float*, const bf16*, int64_t, const float*,
                                     const float*, int, int, int, cudaStream_t);
template void selective_scan_step<float>(const ScanShape&, const ScanInputs&, float*, float*,
                                         cudaStream_t);
template void selective_scan_step<bf16>(const ScanShape&, const ScanInputs&, bf16*, float*,
                                        cudaStream_t);

}  // namespace mamba::cuda
