// Chunked LM head + softmax cross-entropy, forward and backward; see lm_head.h for the math and
// the layouts. The logits of a chunk are in the activation type: the GEMM accumulates in fp32 and
// rounds each logit once, the softmax and the loss are formed from them in fp32 (the running max
// and sum of exponentials) and double (the loss), and dlogits overwrite them in place to feed the
// two backward GEMMs. All logits asked for (logits_out) are fp32 straight from the GEMM.
#include <cuda_pipeline.h>

#include <cmath>
#include <type_traits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/lm_head.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kRowThreads = 512;  // one block per token row of Vp logits
constexpr int kSumThreads = 1024;
constexpr size_t kAlign = 256;

size_t align_up(size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

template <typename T>
constexpr cudaDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

struct LossBuffers {
  double* losses;  // [T]
  double* total;   // [1]
  void* logits;    // [chunk, Vp] in the activation type; null when logits_out takes them
  size_t bytes;
};

// With base == nullptr only the size is computed.
LossBuffers carve(void* base, int64_t T, int Vp, size_t act_bytes, bool backward,
                  bool logits_given) {
  const int64_t chunk = std::min(T, kLossChunkTokens);
  LossBuffers b{};
  char* p = static_cast<char*>(base);
  auto take = [&](size_t bytes) -> void* {
    if (bytes == 0) return nullptr;
    void* at = p ? p + b.bytes : nullptr;
    b.bytes += align_up(bytes);
    return at;
  };
  b.losses = static_cast<double*>(take(T * sizeof(double)));
  b.total = static_cast<double*>(take(sizeof(double)));
  if (!(logits_given && !backward)) b.logits = take(chunk * Vp * act_bytes);
  return b;
}

// Merges the running (max, sum of exp(x - max)) pair (m, s) with (m2, s2). An empty pair is
// (-inf, 0).
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  if (m2 > m) {
    s = s * expf(m - m2) + s2;
    m = m2;
  } else if (s2 > 0.0f) {
    s += s2 * expf(m2 - m);
  }
}

// A row of Vp logits in L, walked by a block: fp32 one element per thread and step; bf16, when
// the row holds whole 16-byte groups (Vp % 8 == 0, rows aligned), eight per thread and step in one
// load, which reads the row at a multiple of the bandwidth of 2-byte loads.
template <typename L>
constexpr int kGroup = std::is_same_v<L, bf16> ? 8 : 1;

template <typename L>
__host__ __device__ __forceinline__ bool grouped(int Vp) {
  return kGroup<L> > 1 && Vp % kGroup<L> == 0;
}

// Adds a group of logits' (max, sum of exp(x - max)) to the running pair (m, s).
template <int G>
__device__ __forceinline__ void merge_group(float& m, float& s, const float (&g)[G]) {
  float gm = g[0];
#pragma unroll
  for (int i = 1; i < G; ++i) gm = fmaxf(gm, g[i]);
  float gs = 0.0f;
#pragma unroll
  for (int i = 0; i < G; ++i) gs += expf(g[i] - gm);
  merge(m, s, gm, gs);
}

// Merges the threads' pairs over the block in a fixed tree, writes the row's loss (thread 0 holds
// the target's logit) and gives every thread the row's pair.
__device__ __forceinline__ void merge_over_block(float& m, float& s, float x_target, double* loss) {
  __shared__ float shared_m[32], shared_s[32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    merge(m, s, __shfl_down_sync(0xffffffffu, m, offset), __shfl_down_sync(0xffffffffu, s, offset));
  }
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) {
    shared_m[warp] = m;
    shared_s[warp] = s;
  }
  __syncthreads();
  if (warp == 0) {
    const int warps = blockDim.x / 32;
    m = lane < warps ? shared_m[lane] : -INFINITY;
    s = lane < warps ? shared_s[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      merge(m, s, __shfl_down_sync(0xffffffffu, m, offset),
            __shfl_down_sync(0xffffffffu, s, offset));
    }
    if (lane == 0) {
      shared_m[0] = m;
      shared_s[0] = s;
      *loss = log(static_cast<double>(s)) + m - x_target;
    }
  }
  __syncthreads();
  m = shared_m[0];
  s = shared_s[0];
}

// dlogits of a group at v: scale * softmax, less scale at the target.
template <int G>
__device__ __forceinline__ void group_dlogits(float (&g)[G], int v, int target, float m, float k,
                                              float scale) {
#pragma unroll
  for (int i = 0; i < G; ++i) {
    const float p = expf(g[i] - m) * k;
    g[i] = v + i == target ? p - scale : p;
  }
}

// One block per row; logits L are fp32 or bf16, read as fp32. logits and dlogits may alias: every
// element is read before the same thread overwrites it, and the target's logit is read before the
// block's first barrier.
template <typename L, typename T, bool kBackward>
__global__ void cross_entropy_kernel(T* dlogits, double* losses, const L* logits,
                                     const int32_t* targets, int Vp, float scale) {
  static_assert(!kBackward || std::is_same_v<L, T>, "dlogits overwrite logits of their type");
  const int64_t row = blockIdx.x;
  const L* x = logits + row * Vp;
  const int target = targets[row];
  const float x_target = threadIdx.x == 0 ? to_f32(x[target]) : 0.0f;
  constexpr int G = kGroup<L>;
  const bool whole = grouped<L>(Vp);

  float m = -INFINITY, s = 0.0f;
  if (whole) {
    for (int v = threadIdx.x * G; v < Vp; v += blockDim.x * G) {
      float g[G];
      load_vec<G>(x + v, g);
      merge_group(m, s, g);
    }
  } else {
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) merge(m, s, to_f32(x[v]), 1.0f);
  }
  merge_over_block(m, s, x_target, losses + row);
  if constexpr (kBackward) {
    const float k = scale / s;
    T* d = dlogits + row * Vp;
    if (whole) {
      for (int v = threadIdx.x * G; v < Vp; v += blockDim.x * G) {
        float g[G];
        load_vec<G>(x + v, g);
        group_dlogits(g, v, target, m, k, scale);
        store_vec<G>(d + v, g);
      }
    } else {
      for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
        const float p = expf(to_f32(x[v]) - m) * k;
        d[v] = from_f32<T>(v == target ? p - scale : p);
      }
    }
  }
}

// Rows of up to this many bf16 logits (128 KiB) go through cross_entropy_staged_kernel.
constexpr int kStagedMaxLogits = 65536;

// The bf16 backward of cross_entropy_kernel for rows of whole groups that fit in shared memory:
// the row is copied there once (cp.async) and both passes read it from there, so the row is read
// from memory once instead of twice, and two blocks of rows up to ~113 KB share an SM, one
// copying while the other computes. A thread copies and reads the groups it takes in
// cross_entropy_kernel, in the same order: no barrier between the copy and the reads, and the
// same bits. In place: dlogits overwrite the logits.
__global__ void __launch_bounds__(kRowThreads)
    cross_entropy_staged_kernel(bf16* logits, double* losses, const int32_t* targets, int Vp,
                                float scale) {
  constexpr int G = kGroup<bf16>;
  extern __shared__ uint4 staged[];
  const int64_t row = blockIdx.x;
  bf16* x = logits + row * Vp;
  const uint4* groups = reinterpret_cast<const uint4*>(x);
  const int count = Vp / G;
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    __pipeline_memcpy_async(&staged[j], &groups[j], sizeof(uint4));
  }
  __pipeline_commit();
  const int target = targets[row];
  const float x_target = threadIdx.x == 0 ? to_f32(x[target]) : 0.0f;
  __pipeline_wait_prior(0);
  float m = -INFINITY, s = 0.0f;
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    float g[G];
    load_vec<G>(reinterpret_cast<const bf16*>(&staged[j]), g);
    merge_group(m, s, g);
  }
  merge_over_block(m, s, x_target, losses + row);
  const float k = scale / s;
  for (int j = threadIdx.x; j < count; j += blockDim.x) {
    float g[G];
    load_vec<G>(reinterpret_cast<const bf16*>(&staged[j]), g);
    group_dlogits(g, j * G, target, m, k, scale);
    store_vec<G>(x + j * G, g);
  }
}

// The in-place backward over a chunk's rows, staged in shared memory where the rows fit.
template <typename T>
void cross_entropy_backward(T* logits, double* losses, const int32_t* targets, int64_t rows, int Vp,
                            float scale, cudaStream_t stream) {
  const auto grid = static_cast<unsigned>(rows);
  if constexpr (std::is_same_v<T, bf16>) {
    if (grouped<bf16>(Vp) && Vp <= kStagedMaxLogits) {
      const int bytes = Vp * int(sizeof(bf16));
      check_cuda(cudaFuncSetAttribute(cross_entropy_staged_kernel,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
                 "cudaFuncSetAttribute (cross_entropy_staged_kernel)");
      cross_entropy_staged_kernel<<<grid, kRowThreads, bytes, stream>>>(logits, losses, targets, Vp,
                                                                        scale);
      check_launch("cross_entropy_staged_kernel");
      return;
    }
  }
  cross_entropy_kernel<T, T, true>
      <<<grid, kRowThreads, 0, stream>>>(logits, losses, logits, targets, Vp, scale);
  check_launch("cross_entropy_kernel");
}

// One block; a fixed partition of the tokens over the threads and a fixed tree.
__global__ void sum_losses_kernel(double* total, const double* losses, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += losses[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *total = acc;
}

}  // namespace

size_t lm_head_workspace_bytes(int64_t T, int Vp, size_t act_bytes, bool backward,
                               bool logits_given) {
  return carve(nullptr, T, Vp, act_bytes, backward, logits_given).bytes;
}

template <typename T>
double lm_head_loss(Gemm& gemm, const T* normed, const T* E, const int32_t* targets, int64_t tokens,
                    int C, int Vp, float grad_scale, T* dnormed, float* dE, float* logits_out,
                    void* workspace, cudaStream_t stream) {
  if (tokens == 0) return 0.0;
  const bool backward = dnormed != nullptr;
  const LossBuffers b = carve(workspace, tokens, Vp, sizeof(T), backward, logits_out != nullptr);
  const float scale = grad_scale / static_cast<float>(tokens);
  constexpr cudaDataType_t ab = data_type<T>();
  for (int64_t t0 = 0; t0 < tokens; t0 += kLossChunkTokens) {
    const int64_t rows = std::min(kLossChunkTokens, tokens - t0);
    const T* x = normed + t0 * C;
    const auto grid = static_cast<unsigned>(rows);
    if (!backward && logits_out) {
      float* logits = logits_out + t0 * Vp;
      gemm.forward(logits, CUDA_R_32F, Vp, x, C, E, ab, rows, C, Vp);
      cross_entropy_kernel<float, float, false><<<grid, kRowThreads, 0, stream>>>(
          nullptr, b.losses + t0, logits, targets + t0, Vp, scale);
      check_launch("cross_entropy_kernel");
      continue;
    }
    T* logits = static_cast<T*>(b.logits);
    gemm.forward(logits, ab, Vp, x, C, E, ab, rows, C, Vp);
    if (!backward) {
      cross_entropy_kernel<T, T, false><<<grid, kRowThreads, 0, stream>>>(
          nullptr, b.losses + t0, logits, targets + t0, Vp, scale);
      check_launch("cross_entropy_kernel");
      continue;
    }
    T* dlogits = logits;  // overwritten in place
    cross_entropy_backward(dlogits, b.losses + t0, targets + t0, rows, Vp, scale, stream);
    gemm.backward_input(dnormed + t0 * C, C, false, dlogits, Vp, E, ab, rows, C, Vp);
    gemm.backward_weight(dE, dlogits, Vp, x, C, ab, rows, C, Vp);
  }
  sum_losses_kernel<<<1, kSumThreads, 0, stream>>>(b.total, b.losses, tokens);
  check_launch("sum_losses_kernel");
  double total = 0.0;
  check_cuda(cudaMemcpyAsync(&total, b.total, sizeof(double), cudaMemcpyDeviceToHost, stream),
             "cudaMemcpyAsync (loss)");
  check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize (loss)");
  return total / static_cast<double>(tokens);
}

template double lm_head_loss<float>(Gemm&, const float*, const float*, const int32_t*, int64_t, int,
                                    int, float, float*, float*, float*, void*, cudaStream_t);
template double lm_head_loss<bf16>(Gemm&, const bf16*, const bf16*, const int32_t*, int64_t, int,
                                   int, float, bf16*, float*, float*, void*, cudaStream_t);

}  // namespace mamba::cuda
