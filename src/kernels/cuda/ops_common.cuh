// Device helpers shared by the backend's kernels: the two activation types, warp
// and block sums with a fixed reduction tree (so results are bit-identical from run to run), and
// launch sizes. Included by .cu files only.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace mamba::cuda {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f32(float x) {
  return x;
}
__device__ __forceinline__ float to_f32(bf16 x) {
  return __bfloat162float(x);
}

// Rounds to nearest even when T is bf16.
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_f32<bf16>(float x) {
  return __float2bfloat16(x);
}

// N consecutive elements at p as fp32, in one load of N * sizeof(T) bytes (4, 8 or 16: p must be
// aligned to it), and the reverse.
template <int N, typename T>
using VecWord = std::conditional_t<N * sizeof(T) == 16, uint4,
                                   std::conditional_t<N * sizeof(T) == 8, uint2, uint32_t>>;

template <int N, typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[N]) {
  if constexpr (N == 1) {
    v[0] = to_f32(p[0]);
  } else {
    static_assert(N * sizeof(T) == 4 || N * sizeof(T) == 8 || N * sizeof(T) == 16);
    const VecWord<N, T> raw = *reinterpret_cast<const VecWord<N, T>*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) v[i] = to_f32(e[i]);
  }
}

template <int N, typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[N]) {
  if constexpr (N == 1) {
    p[0] = from_f32<T>(v[0]);
  } else {
    static_assert(N * sizeof(T) == 4 || N * sizeof(T) == 8 || N * sizeof(T) == 16);
    VecWord<N, T> raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < N; ++i) e[i] = from_f32<T>(v[i]);
    *reinterpret_cast<VecWord<N, T>*>(p) = raw;
  }
}

// Whether p (null counts as aligned) is aligned to `bytes`.
inline bool aligned_to(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}
inline bool all_aligned_to(std::initializer_list<const void*> ps, size_t bytes) {
  for (const void* p : ps)
    if (!aligned_to(p, bytes)) return false;
  return true;
}

template <typename V>
__device__ __forceinline__ V warp_sum(V v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over the block, returned to every thread. `scratch` holds 32 values; blockDim.x is a
// multiple of 32. Contains __syncthreads: every thread of the block must call it.
template <typename V>
__device__ V block_sum(V v, V* scratch) {
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : V(0);
  return warp_sum(v);
}

// Blocks for a grid-stride loop over n elements; the cap keeps the block count bounded while
// giving every SM many blocks.
inline unsigned grid_for(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 16));
}

}  // namespace mamba::cuda
