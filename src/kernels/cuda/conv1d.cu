// Causal depthwise conv1d + SiLU forward and backward; math in kernels/cpu/conv1d.h, layout in
// conv1d.h.
//
// The op is memory-bound (forward: read x, write out; backward: read x and dout, write dx), so the
// design is about bytes in flight per SM. One block takes a tile of kTile time steps of one
// sequence by kCh channels. It first copies the tile's x (with the K-1 steps before it, and in the
// backward the K-1 after it) and dout into shared memory, issuing every copy before waiting on
// any: 16-byte cp.async copies, 8.6 KB a block in the forward and 17.5 KB in the backward (bf16).
// At 8 forward / 4 backward blocks an SM (32 / 64 registers, 256 threads) that is up to ~70 KB in
// flight per SM, over twice what the bandwidth needs. The earlier kernels walked a register window
// through 64 steps, one 4- or 8-byte load a thread in flight at a time (1.7 TB/s); issuing loads
// ahead in registers, or 4 channels a thread, made their backward slower (register pressure).
// The compute then reads shared memory only: a warp takes kSlice steps of the tile, a lane 2
// channels, so each warp store is one 128-byte (bf16) coalesced row segment. The forward reads its
// window from the staged halo; in the backward a thread also computes dpre for the K-1 steps after
// its slice, which its dx needs (the next slice computes them too: cheap against memory).
// dweight / dbias: each thread sums its slice, the block adds its slices in a fixed order through
// shared memory into one partial row per tile ([D*K weights | D biases]), and add_column_sums adds
// the rows in a fixed order: bit-identical from run to run, no atomics.
// Layouts that do not allow the 16-byte copies (D or ld_x not a multiple of 16 bytes of elements,
// or a tensor not 16-byte aligned) stage with plain loads and store channel by channel
// (kVec = false).
#include <cuda_pipeline.h>

#include <initializer_list>
#include <limits>
#include <type_traits>

#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/partial_sums.h"

namespace mamba::cuda {

namespace {

constexpr int kTile = 64;                    // steps a block; a partial row per tile
constexpr int kCh = 64;                      // channels a block
constexpr int kSlice = 8;                    // steps a warp
constexpr int kSlices = kTile / kSlice;      // warps a block
constexpr int kThreads = kCh / 2 * kSlices;  // 256: 2 channels a lane
static_assert(kCh / 2 == 32, "a warp spans the block's channels");

int64_t tiles_per_seq(int64_t seqlen) {
  return (seqlen + kTile - 1) / kTile;
}

__host__ __device__ int channel_blocks(int D) {
  return (D + kCh - 1) / kCh;
}

// Block b takes channel block b % channel_blocks of tile b / channel_blocks: neighbouring blocks
// read neighbouring parts of the same rows.
struct TileAt {
  int64_t tile;  // its partial row
  int64_t row0;  // the sequence's first token
  int64_t s0, s1;
  int d0;
};

__device__ TileAt tile_at(int64_t seqlen, int64_t tiles_per_seq, int D) {
  const int cblocks = channel_blocks(D);
  TileAt t;
  t.tile = blockIdx.x / cblocks;
  t.d0 = static_cast<int>(blockIdx.x % cblocks) * kCh;
  t.row0 = t.tile / tiles_per_seq * seqlen;
  t.s0 = t.tile % tiles_per_seq * kTile;
  t.s1 = min(seqlen, t.s0 + kTile);
  return t;
}

template <typename T, int kRows>
struct alignas(16) Rows {
  T v[kRows][kCh];
};

// Steps first .. first + kRows - 1 of the sequence at row0 (row stride ld), channels d0 ..
// d0 + kCh - 1, into dst; steps outside [0, seqlen) and channels past D read as zero (x before the
// sequence start is the causal padding). kVec: 16-byte cp.async copies, the caller commits and
// waits; else plain loads.
template <typename T, bool kVec, int kRows>
__device__ void stage(Rows<T, kRows>& dst, const T* src, int64_t ld, int64_t row0, int64_t first,
                      int64_t seqlen, int d0, int D) {
  if constexpr (kVec) {
    constexpr int kE = 16 / sizeof(T);  // elements a copy
    constexpr int kCopies = kCh / kE;   // copies a row
    for (int i = threadIdx.x; i < kRows * kCopies; i += kThreads) {
      const int r = i / kCopies, c = i % kCopies * kE;
      const int64_t s = first + r;
      if (s >= 0 && s < seqlen && d0 + c < D) {
        __pipeline_memcpy_async(&dst.v[r][c], src + (row0 + s) * ld + d0 + c, 16);
      } else {
        *reinterpret_cast<uint4*>(&dst.v[r][c]) = make_uint4(0, 0, 0, 0);
      }
    }
  } else {
#pragma unroll 4
    for (int i = threadIdx.x; i < kRows * kCh; i += kThreads) {
      const int r = i / kCh, c = i % kCh;
      const int64_t s = first + r;
      dst.v[r][c] =
          s >= 0 && s < seqlen && d0 + c < D ? src[(row0 + s) * ld + d0 + c] : from_f32<T>(0.0f);
    }
  }
}

// Channels d and d + 1 of a row; `left` = D - d, the channels the row still has.
template <typename T, bool kVec>
__device__ __forceinline__ void store_pair(T* p, const float (&v)[2], int left) {
  if constexpr (kVec) {
    store_vec<2>(p, v);
  } else {
    p[0] = from_f32<T>(v[0]);
    if (left > 1) p[1] = from_f32<T>(v[1]);
  }
}

template <int K>
__device__ __forceinline__ void load_params(float (&w)[2][K], float (&b)[2], const float* weight,
                                            const float* bias, int d, int D) {
#pragma unroll
  for (int v = 0; v < 2; ++v) {
    const bool in = d + v < D;
#pragma unroll
    for (int k = 0; k < K; ++k) w[v][k] = in ? weight[(d + v) * K + k] : 0.0f;
    b[v] = in ? bias[d + v] : 0.0f;
  }
}

__device__ __forceinline__ float sigmoid(float v) {
  return 1.0f / (1.0f + expf(-v));
}

template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kThreads)
    conv1d_silu_forward_kernel(T* out, const T* x, int64_t ld_x, const float* weight,
                               const float* bias, int64_t seqlen, int64_t tiles_per_seq, int D) {
  __shared__ Rows<T, kTile + K - 1> xs;  // steps s0 - (K - 1) .. s0 + kTile - 1
  const TileAt t = tile_at(seqlen, tiles_per_seq, D);
  stage<T, kVec>(xs, x, ld_x, t.row0, t.s0 - (K - 1), seqlen, t.d0, D);
  __pipeline_commit();
  const int c = threadIdx.x % 32 * 2;
  const int d = t.d0 + c;
  const int64_t a = t.s0 + threadIdx.x / 32 * kSlice;
  float w[2][K], b[2];
  load_params<K>(w, b, weight, bias, d, D);
  __pipeline_wait_prior(0);
  __syncthreads();
  if (d >= D) return;
#pragma unroll
  for (int i = 0; i < kSlice; ++i) {
    const int64_t s = a + i;
    if (s < t.s1) {
      const int r = static_cast<int>(s - t.s0);  // the row of x[s - (K - 1)]
      float pre[2] = {b[0], b[1]};
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float xv[2];
        load_vec<2>(&xs.v[r + k][c], xv);
#pragma unroll
        for (int v = 0; v < 2; ++v) pre[v] += w[v][k] * xv[v];
      }
      float o[2];
#pragma unroll
      for (int v = 0; v < 2; ++v) o[v] = pre[v] * sigmoid(pre[v]);
      store_pair<T, kVec>(out + (t.row0 + s) * D + d, o, D - d);
    }
  }
}

// partial: one row of D*K + D floats per tile. dx never overlaps dout or x (the backend checks:
// check_dx_apart). 4 blocks an SM caps registers at 64: no spills with the build's flags
// (--use_fast_math; ptxas -v); without the bound K = 4 took 78, 3 blocks an SM.
template <typename T, int K, bool kVec>
__global__ void __launch_bounds__(kThreads, 4)
    conv1d_silu_backward_kernel(T* __restrict__ dx, float* __restrict__ partial,
                                const T* __restrict__ dout, const T* __restrict__ x, int64_t ld_x,
                                const float* weight, const float* bias, int64_t seqlen,
                                int64_t tiles_per_seq, int D) {
  constexpr int kSteps = kSlice + K - 1;       // a slice's dx needs dpre of K - 1 steps past it
  constexpr int kSums = kCh * (K + 1);         // the block's part of a partial row
  __shared__ Rows<T, kTile + 2 * (K - 1)> xs;  // steps s0 - (K - 1) .. s0 + kTile + K - 2
  __shared__ Rows<T, kTile + K - 1> gs;        // dout, steps s0 .. s0 + kTile + K - 2
  __shared__ float sums[kSlices][kSums];
  const TileAt t = tile_at(seqlen, tiles_per_seq, D);
  stage<T, kVec>(xs, x, ld_x, t.row0, t.s0 - (K - 1), seqlen, t.d0, D);
  stage<T, kVec>(gs, dout, D, t.row0, t.s0, seqlen, t.d0, D);
  __pipeline_commit();
  const int c = threadIdx.x % 32 * 2;
  const int d = t.d0 + c;
  const int slice = threadIdx.x / 32;
  const int64_t a = t.s0 + slice * kSlice;
  float w[2][K], b[2];
  load_params<K>(w, b, weight, bias, d, D);
  float acc_w[2][K] = {};
  float acc_b[2] = {};
  __pipeline_wait_prior(0);
  __syncthreads();
  if (d < D && a < t.s1) {
    // Step a + i: its dpre (zero past the sequence end), then dx of step a + i - (K - 1), complete
    // now: x[j] feeds pre[j + K - 1 - k] through tap k.
    float dpre[K][2] = {};  // steps a + i - (K - 1) .. a + i
#pragma unroll
    for (int i = 0; i < kSteps; ++i) {
      const int64_t s = a + i;
      const int r = static_cast<int>(s - t.s0);  // the xs row of x[s - (K - 1)], the gs row of s
#pragma unroll
      for (int k = 0; k < K - 1; ++k) {
        dpre[k][0] = dpre[k + 1][0];
        dpre[k][1] = dpre[k + 1][1];
      }
      dpre[K - 1][0] = dpre[K - 1][1] = 0.0f;
      if (s < seqlen) {
        float xv[K][2], go[2];
        float pre[2] = {b[0], b[1]};
#pragma unroll
        for (int k = 0; k < K; ++k) {
          load_vec<2>(&xs.v[r + k][c], xv[k]);
#pragma unroll
          for (int v = 0; v < 2; ++v) pre[v] += w[v][k] * xv[k][v];
        }
        load_vec<2>(&gs.v[r][c], go);
#pragma unroll
        for (int v = 0; v < 2; ++v) {
          const float sig = sigmoid(pre[v]);
          dpre[K - 1][v] = go[v] * sig * (1.0f + pre[v] * (1.0f - sig));
        }
        // The slice's own steps (inside the tile, as s < seqlen) add their dweight and dbias terms.
        if (i < kSlice) {
#pragma unroll
          for (int v = 0; v < 2; ++v) {
            acc_b[v] += dpre[K - 1][v];
#pragma unroll
            for (int k = 0; k < K; ++k) acc_w[v][k] += dpre[K - 1][v] * xv[k][v];
          }
        }
      }
      const int64_t j = s - (K - 1);
      if (i >= K - 1 && j < t.s1) {
        float acc[2] = {0.0f, 0.0f};
#pragma unroll
        for (int k = 0; k < K; ++k) {
#pragma unroll
          for (int v = 0; v < 2; ++v) acc[v] += w[v][k] * dpre[K - 1 - k][v];
        }
        store_pair<T, kVec>(dx + (t.row0 + j) * ld_x + d, acc, D - d);
      }
    }
  }
  // The tile's sums: slices added in order 0 .. kSlices - 1. sums[slice] is laid out as the
  // partial row's entries for the block's channels: weights [kCh][K], then biases [kCh].
#pragma unroll
  for (int v = 0; v < 2; ++v) {
#pragma unroll
    for (int k = 0; k < K; ++k) sums[slice][(c + v) * K + k] = acc_w[v][k];
    sums[slice][kCh * K + c + v] = acc_b[v];
  }
  __syncthreads();
  float* row = partial + t.tile * (static_cast<int64_t>(D) * (K + 1));
  for (int i = threadIdx.x; i < kSums; i += kThreads) {
    float total = 0.0f;
#pragma unroll
    for (int sl = 0; sl < kSlices; ++sl) total += sums[sl][i];
    if (i < kCh * K) {
      if (t.d0 + i / K < D) row[static_cast<int64_t>(t.d0) * K + i] = total;
    } else {
      const int ch = t.d0 + i - kCh * K;
      if (ch < D) row[static_cast<int64_t>(D) * K + ch] = total;
    }
  }
}

// Calls f with K and kVec as compile-time constants. kVec: D and ld_x are whole 16-byte copies of
// elements and the tensors are 16-byte aligned, so the tiles are staged with cp.async and rows
// stored two channels at a time.
template <typename T, typename F>
void with_shape(int K, int D, int64_t ld_x, std::initializer_list<const void*> tensors, F&& f) {
  constexpr int kE = 16 / sizeof(T);
  const bool vec = D % kE == 0 && ld_x % kE == 0 && all_aligned_to(tensors, 16);
  auto with_vec = [&](auto width) {
    if (vec) return f(width, std::true_type{});
    f(width, std::false_type{});
  };
  switch (K) {
    case 2:
      return with_vec(std::integral_constant<int, 2>{});
    case 3:
      return with_vec(std::integral_constant<int, 3>{});
    case 4:
      return with_vec(std::integral_constant<int, 4>{});
    default:
      throw_error("conv1d: d_conv = ", K, " is not supported by the CUDA backend (2, 3, 4)");
  }
}

unsigned conv_blocks(int batch, int64_t seqlen, int D) {
  const int64_t blocks = batch * tiles_per_seq(seqlen) * channel_blocks(D);
  if (blocks > std::numeric_limits<int>::max()) {
    throw_error("conv1d: batch ", batch, " x seqlen ", seqlen, " x ", D,
                " channels needs more blocks than one launch takes; use a smaller batch");
  }
  return static_cast<unsigned>(blocks);
}

}  // namespace

template <typename T>
void conv1d_silu_forward(T* out, const T* x, int64_t ld_x, const float* weight, const float* bias,
                         int batch, int64_t seqlen, int D, int K, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  with_shape<T>(K, D, ld_x, {out, x}, [&](auto width, auto vec) {
    conv1d_silu_forward_kernel<T, decltype(width)::value, decltype(vec)::value>
        <<<conv_blocks(batch, seqlen, D), kThreads, 0, stream>>>(out, x, ld_x, weight, bias, seqlen,
                                                                 tiles_per_seq(seqlen), D);
  });
  check_launch("conv1d_silu_forward_kernel");
}

size_t conv1d_backward_workspace_bytes(int batch, int64_t seqlen, int D, int K) {
  return static_cast<size_t>(batch * tiles_per_seq(seqlen)) * D * (K + 1) * sizeof(float);
}

template <typename T>
void conv1d_silu_backward(T* dx, float* dweight, float* dbias, const T* dout, const T* x,
                          int64_t ld_x, const float* weight, const float* bias, int batch,
                          int64_t seqlen, int D, int K, void* workspace, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  float* partial = static_cast<float*>(workspace);
  with_shape<T>(K, D, ld_x, {dx, dout, x}, [&](auto width, auto vec) {
    conv1d_silu_backward_kernel<T, decltype(width)::value, decltype(vec)::value>
        <<<conv_blocks(batch, seqlen, D), kThreads, 0, stream>>>(
            dx, partial, dout, x, ld_x, weight, bias, seqlen, tiles_per_seq(seqlen), D);
  });
  check_launch("conv1d_silu_backward_kernel");
  const int64_t tiles = batch * tiles_per_seq(seqlen);
  const int64_t ld = static_cast<int64_t>(D) * (K + 1);
  add_column_sums(dweight, partial, tiles, static_cast<int64_t>(D) * K, ld, stream);
  add_column_sums(dbias, partial + static_cast<int64_t>(D) * K, tiles, D, ld, stream);
}

template void conv1d_silu_forward<float>(float*, const float*, int64_t, const float*, const float*,
                                         int, int64_t, int, int, cudaStream_t);
template void conv1d_silu_forward<bf16>(bf16*, const bf16*, int64_t, const float*, const float*,
                                        int, int64_t, int, int, cudaStream_t);
template void conv1d_silu_backward<float>(float*, float*, float*, const float*, const float*,
                                          int64_t, const float*, const float*, int, int64_t, int,
                                          int, void*, cudaStream_t);
template void conv1d_silu_backward<bf16>(bf16*, float*, float*, const bf16*, const bf16*, int64_t,
                                         const float*, const float*, int, int64_t, int, int, void*,
                                         cudaStream_t);

}  // namespace mamba::cuda
