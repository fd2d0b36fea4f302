// Causal depthwise conv1d + SiLU forward and backward; math in kernels/cpu/conv1d.h, layout in
// conv1d.h.
//
// One thread per (channel, tile of kTile time steps of one sequence), or per 2 or 4 consecutive
// channels where the layout allows (one 4- or 8-byte access for them in bf16; see with_shape):
// consecutive threads take consecutive channels, so each time step is one coalesced row read. The
// thread slides a window of the last K inputs through registers, reading each x once (plus K-1 at
// the tile start). Backward walks forward in time: dpre[s] is recomputed from the window, and dx[j]
// is complete once dpre[j .. j+K-1] are known, so the thread runs K-1 steps past its tile. Each
// thread's dweight / dbias sums over its tile go to a partial row per tile ([D*K weights | D
// biases]), added by add_column_sums in a fixed order. In the forward a thread issues the loads of
// kAhead steps before it uses the first: one load at a time left it waiting on memory latency, at
// under half of the bandwidth. (The backward, done the same way, was slower: 236 against 170 us at
// the 130M shape.)
#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/partial_sums.h"

namespace mamba::cuda {

namespace {

constexpr int kTile = 64;
constexpr int kThreads = 128;
constexpr int kAhead = 8;

struct ConvGrid {
  int64_t tiles_per_seq;
  dim3 grid;
};

// V: channels per thread.
ConvGrid conv_grid(int batch, int64_t seqlen, int D, int V) {
  const int64_t tiles_per_seq = (seqlen + kTile - 1) / kTile;
  const int threads = (D + V - 1) / V;
  return {tiles_per_seq, dim3(static_cast<unsigned>(batch * tiles_per_seq),
                              static_cast<unsigned>((threads + kThreads - 1) / kThreads))};
}

__device__ __forceinline__ float sigmoid(float v) {
  return 1.0f / (1.0f + expf(-v));
}

template <typename T, int K, int V>
__global__ void conv1d_silu_forward_kernel(T* out, const T* x, int64_t ld_x, const float* weight,
                                           const float* bias, int64_t seqlen, int64_t tiles_per_seq,
                                           int D) {
  const int d = (blockIdx.y * blockDim.x + threadIdx.x) * V;
  if (d >= D) return;
  const int64_t row0 = blockIdx.x / tiles_per_seq * seqlen;  // the sequence's first token
  const int64_t s0 = blockIdx.x % tiles_per_seq * kTile;
  const int64_t s1 = min(seqlen, s0 + kTile);
  float w[V][K], b[V];
  for (int v = 0; v < V; ++v) {
    for (int k = 0; k < K; ++k) w[v][k] = weight[(d + v) * K + k];
    b[v] = bias[d + v];
  }
  float win[K][V];  // x[s - K + 1 .. s]; zero before the sequence start
  for (int k = 0; k < K - 1; ++k) {
    const int64_t s = s0 - (K - 1) + k;
    if (s >= 0) {
      load_vec<V>(x + (row0 + s) * ld_x + d, win[k]);
    } else {
      for (int v = 0; v < V; ++v) win[k][v] = 0.0f;
    }
  }
  for (int64_t s_ahead = s0; s_ahead < s1; s_ahead += kAhead) {
    float xs[kAhead][V];
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      if (s_ahead + j < s1) load_vec<V>(x + (row0 + s_ahead + j) * ld_x + d, xs[j]);
    }
#pragma unroll
    for (int j = 0; j < kAhead; ++j) {
      const int64_t s = s_ahead + j;
      if (s >= s1) break;
      float o[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        win[K - 1][v] = xs[j][v];
        float pre = b[v];
        for (int k = 0; k < K; ++k) pre += w[v][k] * win[k][v];
        o[v] = pre * sigmoid(pre);
        for (int k = 0; k < K - 1; ++k) win[k][v] = win[k + 1][v];
      }
      store_vec<V>(out + (row0 + s) * D + d, o);
    }
  }
}

// partial: one row of D*K + D floats per tile (blockIdx.x).
// dx never overlaps dout or x (the backend checks: check_dx_apart): __restrict__ lets loads of
// later steps go ahead of earlier steps' stores.
template <typename T, int K, int V>
__global__ void conv1d_silu_backward_kernel(T* __restrict__ dx, float* __restrict__ partial,
                                            const T* __restrict__ dout, const T* __restrict__ x,
                                            int64_t ld_x, const float* weight, const float* bias,
                                            int64_t seqlen, int64_t tiles_per_seq, int D) {
  const int d = (blockIdx.y * blockDim.x + threadIdx.x) * V;
  if (d >= D) return;
  const int64_t row0 = blockIdx.x / tiles_per_seq * seqlen;
  const int64_t s0 = blockIdx.x % tiles_per_seq * kTile;
  const int64_t s1 = min(seqlen, s0 + kTile);
  float w[V][K], b[V];
  for (int v = 0; v < V; ++v) {
    for (int k = 0; k < K; ++k) w[v][k] = weight[(d + v) * K + k];
    b[v] = bias[d + v];
  }
  float win[K][V];        // x[s - K + 1 .. s]
  float dpre[K][V] = {};  // dpre[s - K + 1 .. s]; zero past the sequence end
  float acc_w[V][K] = {};
  float acc_b[V] = {};
  for (int k = 0; k < K - 1; ++k) {
    const int64_t s = s0 - (K - 1) + k;
    if (s >= 0) {
      load_vec<V>(x + (row0 + s) * ld_x + d, win[k]);
    } else {
      for (int v = 0; v < V; ++v) win[k][v] = 0.0f;
    }
  }
  // Step s: its x and dout (when inside the sequence), its dpre, and dx of step s - (K - 1);
  // accumulate: s lies in the tile (its dweight and dbias terms are this tile's).
  auto step = [&](int64_t s, bool inside, bool accumulate) {
    float g[V] = {};
    if (inside) {
      float go[V];
      load_vec<V>(x + (row0 + s) * ld_x + d, win[K - 1]);
      load_vec<V>(dout + (row0 + s) * D + d, go);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        float pre = b[v];
        for (int k = 0; k < K; ++k) pre += w[v][k] * win[k][v];
        const float sig = sigmoid(pre);
        g[v] = go[v] * sig * (1.0f + pre * (1.0f - sig));
        if (accumulate) {
          acc_b[v] += g[v];
          for (int k = 0; k < K; ++k) acc_w[v][k] += g[v] * win[k][v];
        }
      }
    }
#pragma unroll
    for (int v = 0; v < V; ++v) dpre[K - 1][v] = g[v];
    // x[j] feeds pre[j + K - 1 - k] through tap k.
    const int64_t j = s - (K - 1);
    if (j >= s0) {
      float acc[V];
#pragma unroll
      for (int v = 0; v < V; ++v) {
        acc[v] = 0.0f;
        for (int k = 0; k < K; ++k) acc[v] += w[v][k] * dpre[K - 1 - k][v];
      }
      store_vec<V>(dx + (row0 + j) * ld_x + d, acc);
    }
    for (int k = 0; k < K - 1; ++k) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        win[k][v] = win[k + 1][v];
        dpre[k][v] = dpre[k + 1][v];
      }
    }
  };
  // The tile's steps, unrolled so that later steps' loads can go ahead of earlier steps' work,
  // then the K - 1 after it, whose dpre dx needs.
  int64_t s = s0;
#pragma unroll 4
  for (; s < s1; ++s) step(s, true, true);
  for (; s < s1 + K - 1; ++s) step(s, s < seqlen, false);
  float* row = partial + static_cast<int64_t>(blockIdx.x) * (static_cast<int64_t>(D) * (K + 1));
  for (int v = 0; v < V; ++v) {
    for (int k = 0; k < K; ++k) row[(d + v) * K + k] = acc_w[v][k];
    row[static_cast<int64_t>(D) * K + d + v] = acc_b[v];
  }
}

// Calls f with K and the channels per thread V as compile-time constants: the most of kMaxV, 2
// and 1 that D, ld_x and the tensors' alignment allow (V channels are one access of V * sizeof(T)
// bytes). The forward takes up to four (8-byte accesses in bf16: 78 -> 73 us at 130M's shape on
// an H200), the backward up to two (four made it slower: 127 -> 164 us).
template <typename T, int kMaxV, typename F>
void with_shape(int K, int D, int64_t ld_x, std::initializer_list<const void*> tensors, F&& f) {
  auto fits = [&](int v) {
    return D % v == 0 && ld_x % v == 0 && all_aligned_to(tensors, v * sizeof(T));
  };
  auto with_v = [&](auto width) {
    if constexpr (kMaxV >= 4) {
      if (fits(4)) return f(width, std::integral_constant<int, 4>{});
    }
    if (fits(2)) return f(width, std::integral_constant<int, 2>{});
    f(width, std::integral_constant<int, 1>{});
  };
  switch (K) {
    case 2:
      return with_v(std::integral_constant<int, 2>{});
    case 3:
      return with_v(std::integral_constant<int, 3>{});
    case 4:
      return with_v(std::integral_constant<int, 4>{});
    default:
      throw_error("conv1d: d_conv = ", K, " is not supported by the CUDA backend (2, 3, 4)");
  }
}

}  // namespace

template <typename T>
void conv1d_silu_forward(T* out, const T* x, int64_t ld_x, const float* weight, const float* bias,
                         int batch, int64_t seqlen, int D, int K, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  with_shape<T, 4>(K, D, ld_x, {out, x}, [&](auto width, auto channels) {
    constexpr int V = decltype(channels)::value;
    const ConvGrid g = conv_grid(batch, seqlen, D, V);
    conv1d_silu_forward_kernel<T, decltype(width)::value, V>
        <<<g.grid, kThreads, 0, stream>>>(out, x, ld_x, weight, bias, seqlen, g.tiles_per_seq, D);
  });
  check_launch("conv1d_silu_forward_kernel");
}

size_t conv1d_backward_workspace_bytes(int batch, int64_t seqlen, int D, int K) {
  const int64_t tiles = batch * ((seqlen + kTile - 1) / kTile);
  return static_cast<size_t>(tiles) * D * (K + 1) * sizeof(float);
}

template <typename T>
void conv1d_silu_backward(T* dx, float* dweight, float* dbias, const T* dout, const T* x,
                          int64_t ld_x, const float* weight, const float* bias, int batch,
                          int64_t seqlen, int D, int K, void* workspace, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  float* partial = static_cast<float*>(workspace);
  with_shape<T, 2>(K, D, ld_x, {dx, dout, x}, [&](auto width, auto channels) {
    constexpr int V = decltype(channels)::value;
    const ConvGrid g = conv_grid(batch, seqlen, D, V);
    conv1d_silu_backward_kernel<T, decltype(width)::value, V><<<g.grid, kThreads, 0, stream>>>(
        dx, partial, dout, x, ld_x, weight, bias, seqlen, g.tiles_per_seq, D);
  });
  check_launch("conv1d_silu_backward_kernel");
  const int64_t tiles = batch * ((seqlen + kTile - 1) / kTile);
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
