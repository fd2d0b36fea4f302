// Causal depthwise conv1d + SiLU forward and backward; math in kernels/cpu/conv1d.h, layout in
// conv1d.h.
//
// A block takes kTile time steps of one sequence and kLanes * V consecutive channels (V = 2 in bf16
// where the layout allows: one 4-byte shared-memory read for both). It first copies its rows of x
// (and, in backward, of dout), with the K - 1 steps either side that the causal window needs, into
// shared memory: cp.async, 16 bytes at a time, where rows are 16-byte aligned; zeros outside the
// sequence. Then each thread walks a run of kRun steps of its channels, sliding the window of the
// last K inputs through registers, the run unrolled (walk_run). Before, one thread per (channels,
// 64 steps) loaded its own x and dout from global memory, one 128-byte warp load per step and
// tensor, with few in flight. At 130M's shape (16 x 2048, D = 1536, on an H200) the forward went
// from 73 to 62 us and the backward from 127 to 116 us; the bytes alone need ~47 and ~77 us. Both
// now issue instructions at ~70% of the SMs' peak while DRAM runs at 61% (forward) and 49%
// (backward) of its own (Nsight Compute). The backward takes ~42 instructions an element: the
// terms of dpre, dx, dweight and dbias ~22, the bf16 conversions, shared-memory reads, staging and
// recomputed steps the rest.
//
// With a low-rank term (conv1d.h: x_proj's input gradient, whose only reader is this backward),
// the block first stages dout and that term's rows of a (where x goes afterwards), adds a x weight
// into the staged dout by MMA (add_lowrank), then stages x. At 130M's shape (rank 80) on an H200:
// 193 us, against 120 for the backward alone plus 95 for cuBLASLt accumulating the term into dout
// first; 368 against 217 + 193 at 1 x 65536 (bench_ops). Loading the weight's fragments before
// waiting for the staged rows took 1.6-2.7% off (189.9 / 191.9 -> 186.8 / 188.3 us; 1 x 65536
// 358.9 / 363.5 -> 351.7 / 351.5). Staging x at once into a region of its own (2 blocks per SM
// instead of 3) was slower: 220 and 422 us.
//
// Backward: dpre[s] is recomputed from the window; dx[j] needs dpre[j .. j + K - 1], so a run
// computes dpre K - 1 steps past its end (steps the next run computes again: 3 of 32 at K = 4).
// dweight / dbias: each thread sums its run's terms, the block adds its runs in run order through
// shared memory into its channels of one partial row per tile ([D*K weights | D biases]), and
// add_column_sums adds the tiles' rows in a fixed order: bit-identical from run to run.
#include <cuda_pipeline.h>

#include <initializer_list>
#include <type_traits>

#include "kernels/cuda/conv1d.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/partial_sums.h"

namespace mamba::cuda {

namespace {

constexpr int kLanes = 64;  // threads across a block's channels, V channels each
constexpr int kRuns = 4;    // threads across its time steps
constexpr int kThreads = kLanes * kRuns;
constexpr int kRun = 32;             // steps a thread walks
constexpr int kTile = kRuns * kRun;  // steps a block takes
// Values after each staged row of dout (and of a low-rank term's a): the rows that one fragment
// load or one warp's read-modify-write of MMA sums touches start in different banks.
constexpr int kPad = 8;
constexpr int kMaxK = 4;
constexpr int kLowRankRows =
    (kTile + kMaxK - 1 + 15) / 16 * 16;  // dout's staged rows, in m16 tiles

// A block's steps [s0, s1) of the sequence whose first token is row row0, and its first channel.
struct Tile {
  int64_t row0, s0, s1;
  int c0;
};

// Blocks are numbered channel block first, so that the blocks running at one time read
// neighbouring parts of the same rows.
__device__ __forceinline__ Tile block_tile(int64_t seqlen, int64_t tiles_per_seq, int channels,
                                           int channel_blocks) {
  const int64_t tile = blockIdx.x / channel_blocks;
  Tile t;
  t.row0 = tile / tiles_per_seq * seqlen;
  t.s0 = tile % tiles_per_seq * kTile;
  t.s1 = min(seqlen, t.s0 + kTile);
  t.c0 = static_cast<int>(blockIdx.x % channel_blocks) * channels;
  return t;
}

// Queues the copy of steps [first, first + rows) of the tile's W channels of src (rows of stride
// ld) into dst (rows of dst_ld elements); steps outside [0, seqlen) and channels past D become
// zeros. kAsync: 16-byte cp.async copies (rows and D 16-byte aligned), else one element at a time.
template <typename T, int W, bool kAsync>
__device__ __forceinline__ void stage(T* dst, int dst_ld, const T* src, int64_t ld, const Tile& t,
                                      int64_t first, int rows, int64_t seqlen, int D) {
  constexpr int E = kAsync ? 16 / static_cast<int>(sizeof(T)) : 1;
  constexpr int kPerRow = W / E;
  for (int i = threadIdx.x; i < rows * kPerRow; i += kThreads) {
    const int r = i / kPerRow;
    const int c = i % kPerRow * E;
    const int64_t s = first + r;
    const bool inside = s >= 0 && s < seqlen && t.c0 + c < D;
    T* to = dst + r * dst_ld + c;
    const T* from = src + (t.row0 + s) * ld + t.c0 + c;
    if constexpr (kAsync) {
      if (inside) {
        __pipeline_memcpy_async(to, from, 16);
      } else {
        *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
      }
    } else {
      *to = inside ? *from : from_f32<T>(0.0f);
    }
  }
}

// Waits for the staged rows of every thread.
__device__ __forceinline__ void staged() {
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
}

template <int K, int V>
__device__ __forceinline__ void load_taps(const float* weight, const float* bias, int d,
                                          float (&w)[V][K], float (&b)[V]) {
#pragma unroll
  for (int v = 0; v < V; ++v) {
#pragma unroll
    for (int k = 0; k < K; ++k) w[v][k] = weight[(d + v) * K + k];
    b[v] = bias[d + v];
  }
}

__device__ __forceinline__ float sigmoid(float v) {
  return 1.0f / (1.0f + expf(-v));
}

// Calls step(i, steps) for i = 0 .. steps + kExtra - 1 (steps: the run's steps inside the
// sequence). Whole runs (every run but a sequence's last) are unrolled, so that i is a compile-time
// constant: the window slides by register renaming and the offsets are immediates. With a run-time
// count the window moved by register copies: the backward ran ~85 M warp instructions at 130M's
// shape against 66 M unrolled (Nsight Compute), 141 against 124 us under the profiler.
template <int kExtra, typename Step>
__device__ __forceinline__ void walk_run(int steps, Step&& step) {
  if (steps == kRun) {
#pragma unroll
    for (int i = 0; i < kRun + kExtra; ++i) step(i, kRun);
  } else {
    for (int i = 0; i < steps + kExtra; ++i) step(i, steps);
  }
}

// Shared memory: x, steps s0 - (K - 1) .. s0 + kTile - 1.
template <typename T, int K, int V, bool kAsync>
__global__ void __launch_bounds__(kThreads)
    conv1d_silu_forward_kernel(T* out, const T* x, int64_t ld_x, const float* weight,
                               const float* bias, int64_t seqlen, int64_t tiles_per_seq, int D,
                               int channel_blocks) {
  constexpr int W = kLanes * V;
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);
  const Tile t = block_tile(seqlen, tiles_per_seq, W, channel_blocks);
  stage<T, W, kAsync>(xs, W, x, ld_x, t, t.s0 - (K - 1), kTile + K - 1, seqlen, D);
  staged();
  const int lane = threadIdx.x % kLanes;
  const int d = t.c0 + lane * V;
  const int64_t a = t.s0 + threadIdx.x / kLanes * kRun;  // the run's first step
  if (d >= D || a >= t.s1) return;
  float w[V][K], b[V];
  load_taps<K, V>(weight, bias, d, w, b);
  const T* xr = xs + (a - t.s0) * W + lane * V;  // step a - (K - 1)
  float win[K][V];                               // x[s - K + 1 .. s]
#pragma unroll
  for (int k = 0; k < K - 1; ++k) load_vec<V>(xr + k * W, win[k]);
  T* o = out + (t.row0 + a) * D + d;
  auto step = [&](int i, int) {
    load_vec<V>(xr + (i + K - 1) * W, win[K - 1]);
    float y[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      float pre = b[v];
#pragma unroll
      for (int k = 0; k < K; ++k) pre += w[v][k] * win[k][v];
      y[v] = pre * sigmoid(pre);
#pragma unroll
      for (int k = 0; k < K - 1; ++k) win[k][v] = win[k + 1][v];
    }
    store_vec<V>(o + i * D, y);
  };
  walk_run<0>(static_cast<int>(min(static_cast<int64_t>(kRun), t.s1 - a)), step);
}

// Queues the copy of a's rows for steps s0 .. s0 + kLowRankRows - 1 (rank values each) into dst
// (rows of rank + kPad values); steps past the sequence become zeros.
__device__ __forceinline__ void stage_lowrank(bf16* dst, const ConvLowRank<bf16>& lr, const Tile& t,
                                              int64_t seqlen) {
  const int per_row = lr.rank / 8;
  for (int i = threadIdx.x; i < kLowRankRows * per_row; i += kThreads) {
    const int r = i / per_row;
    const int c = i % per_row * 8;
    bf16* to = dst + r * (lr.rank + kPad) + c;
    if (t.s0 + r < seqlen) {
      __pipeline_memcpy_async(to, lr.a + (t.row0 + t.s0 + r) * lr.ld_a + c, 16);
    } else {
      *reinterpret_cast<uint4*>(to) = make_uint4(0, 0, 0, 0);
    }
  }
}

__device__ __forceinline__ uint32_t weight_pair(const ConvLowRank<bf16>& lr, int k, int n, int D) {
  if (n >= D) return 0u;
  const __nv_bfloat162 pair(lr.weight[static_cast<int64_t>(k) * D + n],
                            lr.weight[static_cast<int64_t>(k + 1) * D + n]);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// The B fragments of a warp's two n8 tiles of the weight (warp w: the block's channels 16w ..
// 16w + 15), read from global memory, each register rows k and k + 1 of one column. Loaded before
// the block waits for its staged rows, so that their latency hides behind the copies.
struct LowRankFragments {
  uint32_t b[kConvMaxRank / 16][2][2];
};

__device__ __forceinline__ LowRankFragments lowrank_fragments(const ConvLowRank<bf16>& lr,
                                                              const Tile& t, int D) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, q = lane % 4;
  LowRankFragments f{};
#pragma unroll
  for (int ks = 0; ks < kConvMaxRank / 16; ++ks) {
    if (ks >= lr.rank / 16) break;
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {
      const int n = t.c0 + warp * 16 + nt * 8 + g;
      f.b[ks][nt][0] = weight_pair(lr, ks * 16 + 2 * q, n, D);
      f.b[ks][nt][1] = weight_pair(lr, ks * 16 + 8 + 2 * q, n, D);
    }
  }
  return f;
}

// Adds a x weight to the staged dout rows (`rows` of them, stride g_ld, the block's W = 128
// channels), each sum rounded to bf16 once, as linear_backward accumulating into dout would. The
// a rows are staged (a_rows, stride rank + kPad); warp w walks the m16 tiles of rows with
// ldmatrix'd A fragments against its weight fragments w.
__device__ __forceinline__ void add_lowrank(bf16* gs, int g_ld, int rows, const bf16* a_rows,
                                            const ConvLowRank<bf16>& lr,
                                            const LowRankFragments& w) {
  constexpr int kMaxSteps = kConvMaxRank / 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, q = lane % 4;
  const int steps = lr.rank / 16, a_ld = lr.rank + kPad;
  const auto& b = w.b;
  for (int mt = 0; mt < kLowRankRows / 16; ++mt) {
    float acc[2][4] = {};
#pragma unroll
    for (int ks = 0; ks < kMaxSteps; ++ks) {
      if (ks >= steps) break;
      uint32_t f[4];
      ldmatrix_x4(f, a_rows + (mt * 16 + lane % 16) * a_ld + ks * 16 + lane / 16 * 8);
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        mma_16816(acc[nt], f[0], f[1], f[2], f[3], b[ks][nt][0], b[ks][nt][1]);
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = mt * 16 + g + 8 * h;
      if (r >= rows) continue;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
        auto* p = reinterpret_cast<__nv_bfloat162*>(gs + r * g_ld + warp * 16 + nt * 8 + 2 * q);
        const float2 old = __bfloat1622float2(*p);
        *p = __floats2bfloat162_rn(old.x + acc[nt][2 * h], old.y + acc[nt][2 * h + 1]);
      }
    }
  }
}

// Shared memory: x, steps s0 - (K - 1) .. s0 + kTile + K - 2; then dout, steps s0 .. s0 + kTile +
// K - 2 (rows of W + kPad); at the end the runs' dweight / dbias terms. kLowRank (bf16, V = 2,
// kAsync): first dout and a's rows (where x goes later), the term added into dout, then x. dx never
// overlaps dout or x (the backend checks: check_dx_apart). partial: one row of D*K + D floats per
// tile.
template <typename T, int K, int V, bool kAsync, bool kLowRank>
__global__ void __launch_bounds__(kThreads)
    conv1d_silu_backward_kernel(T* __restrict__ dx, float* __restrict__ partial,
                                const T* __restrict__ dout, const T* __restrict__ x, int64_t ld_x,
                                const float* weight, const float* bias, int64_t seqlen,
                                int64_t tiles_per_seq, int D, int channel_blocks,
                                ConvLowRank<T> lowrank) {
  constexpr int W = kLanes * V;
  constexpr int kGradRow = W + kPad;
  extern __shared__ __align__(16) unsigned char smem[];
  T* xs = reinterpret_cast<T*>(smem);
  T* gs = xs + (kTile + 2 * (K - 1)) * W;
  const Tile t = block_tile(seqlen, tiles_per_seq, W, channel_blocks);
  stage<T, W, kAsync>(gs, kGradRow, dout, D, t, t.s0, kTile + K - 1, seqlen, D);
  if constexpr (kLowRank) {
    stage_lowrank(xs, lowrank, t, seqlen);
    const LowRankFragments w = lowrank_fragments(lowrank, t, D);
    staged();
    add_lowrank(gs, kGradRow, kTile + K - 1, xs, lowrank, w);
    __syncthreads();  // a's rows are read: x takes their place
  }
  stage<T, W, kAsync>(xs, W, x, ld_x, t, t.s0 - (K - 1), kTile + 2 * (K - 1), seqlen, D);
  staged();
  const int lane = threadIdx.x % kLanes;
  const int run = threadIdx.x / kLanes;
  const int d = t.c0 + lane * V;
  const int64_t a = t.s0 + run * kRun;
  float acc_w[V][K] = {};
  float acc_b[V] = {};
  if (d < D && a < t.s1) {
    float w[V][K], b[V];
    load_taps<K, V>(weight, bias, d, w, b);
    const T* xr = xs + (a - t.s0) * W + lane * V;         // step a - (K - 1)
    const T* gr = gs + (a - t.s0) * kGradRow + lane * V;  // step a
    float win[K][V];                                      // x[s - K + 1 .. s]
    float dpre[K][V] = {};                                // dpre[s - K + 1 .. s]
#pragma unroll
    for (int k = 0; k < K - 1; ++k) load_vec<V>(xr + k * W, win[k]);
    T* dxr = dx + (t.row0 + a) * ld_x + d;
    // Step a + i: its dpre (zero past the sequence end, where the staged dout is zero) and, from
    // i = K - 1 on, dx of step a + i - (K - 1); dweight and dbias terms for the run's own steps.
    auto step = [&](int i, int steps) {
      float go[V];
      load_vec<V>(xr + (i + K - 1) * W, win[K - 1]);
      load_vec<V>(gr + i * kGradRow, go);
#pragma unroll
      for (int v = 0; v < V; ++v) {
        float pre = b[v];
#pragma unroll
        for (int k = 0; k < K; ++k) pre += w[v][k] * win[k][v];
        const float sig = sigmoid(pre);
        dpre[K - 1][v] = go[v] * sig * (1.0f + pre * (1.0f - sig));
        if (i < steps) {
          acc_b[v] += dpre[K - 1][v];
#pragma unroll
          for (int k = 0; k < K; ++k) acc_w[v][k] += dpre[K - 1][v] * win[k][v];
        }
      }
      // x[j] feeds pre[j + K - 1 - k] through tap k.
      if (i >= K - 1) {
        float acc[V];
#pragma unroll
        for (int v = 0; v < V; ++v) {
          acc[v] = 0.0f;
#pragma unroll
          for (int k = 0; k < K; ++k) acc[v] += w[v][k] * dpre[K - 1 - k][v];
        }
        store_vec<V>(dxr + (i - (K - 1)) * ld_x, acc);
      }
#pragma unroll
      for (int k = 0; k < K - 1; ++k) {
#pragma unroll
        for (int v = 0; v < V; ++v) {
          win[k][v] = win[k + 1][v];
          dpre[k][v] = dpre[k + 1][v];
        }
      }
    };
    walk_run<K - 1>(static_cast<int>(min(static_cast<int64_t>(kRun), t.s1 - a)), step);
  }
  __syncthreads();  // the staged rows are read; their space takes the terms
  float* terms = reinterpret_cast<float*>(smem);  // [kRuns][K + 1][W]
#pragma unroll
  for (int v = 0; v < V; ++v) {
#pragma unroll
    for (int k = 0; k < K; ++k) terms[(run * (K + 1) + k) * W + lane * V + v] = acc_w[v][k];
    terms[(run * (K + 1) + K) * W + lane * V + v] = acc_b[v];
  }
  __syncthreads();
  const int c = t.c0 + static_cast<int>(threadIdx.x);
  if (threadIdx.x >= W || c >= D) return;
  float* row = partial + blockIdx.x / channel_blocks * (static_cast<int64_t>(D) * (K + 1));
  for (int k = 0; k <= K; ++k) {
    float sum = 0.0f;
    for (int r = 0; r < kRuns; ++r) sum += terms[(r * (K + 1) + k) * W + threadIdx.x];
    if (k < K) {
      row[static_cast<int64_t>(c) * K + k] = sum;
    } else {
      row[static_cast<int64_t>(D) * K + c] = sum;
    }
  }
}

struct ConvGrid {
  int64_t tiles_per_seq;
  int channel_blocks;
  unsigned blocks;
};

ConvGrid conv_grid(int batch, int64_t seqlen, int D, int V) {
  ConvGrid g;
  g.tiles_per_seq = (seqlen + kTile - 1) / kTile;
  g.channel_blocks = (D + kLanes * V - 1) / (kLanes * V);
  g.blocks = static_cast<unsigned>(batch * g.tiles_per_seq * g.channel_blocks);
  return g;
}

// Calls f with K, the channels per thread V and whether rows are staged by 16-byte copies, as
// compile-time constants. V = 2 in bf16 where D, ld_x and the tensors allow 4-byte accesses to
// pairs (in fp32 a block of 64 channels then has rows of 256 bytes, as in bf16). kAsync needs the
// rows read (x at ld_x, dout at D) and their first element 16-byte aligned.
template <typename T, typename F>
void with_layout(int K, int D, int64_t ld_x, std::initializer_list<const void*> pairs,
                 std::initializer_list<const void*> staged_rows, F&& f) {
  const bool pair =
      sizeof(T) == 2 && D % 2 == 0 && ld_x % 2 == 0 && all_aligned_to(pairs, 2 * sizeof(T));
  const bool async =
      (D * sizeof(T)) % 16 == 0 && (ld_x * sizeof(T)) % 16 == 0 && all_aligned_to(staged_rows, 16);
  auto with_async = [&](auto k, auto v) {
    if (async) return f(k, v, std::true_type{});
    f(k, v, std::false_type{});
  };
  auto with_v = [&](auto k) {
    if constexpr (sizeof(T) == 2) {
      if (pair) return with_async(k, std::integral_constant<int, 2>{});
    }
    with_async(k, std::integral_constant<int, 1>{});
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

// The kernels take more than the default 48 KB of shared memory at K = 4 in the backward.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes, const char* what) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)),
             what);
}

}  // namespace

template <typename T>
void conv1d_silu_forward(T* out, const T* x, int64_t ld_x, const float* weight, const float* bias,
                         int batch, int64_t seqlen, int D, int K, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  with_layout<T>(K, D, ld_x, {out, x}, {x}, [&](auto width, auto channels, auto async) {
    constexpr int Kc = decltype(width)::value;
    constexpr int V = decltype(channels)::value;
    const ConvGrid g = conv_grid(batch, seqlen, D, V);
    const size_t smem = static_cast<size_t>(kTile + Kc - 1) * kLanes * V * sizeof(T);
    auto kernel = conv1d_silu_forward_kernel<T, Kc, V, decltype(async)::value>;
    allow_shared_memory(kernel, smem, "conv1d_silu_forward_kernel");
    kernel<<<g.blocks, kThreads, smem, stream>>>(out, x, ld_x, weight, bias, seqlen,
                                                 g.tiles_per_seq, D, g.channel_blocks);
  });
  check_launch("conv1d_silu_forward_kernel");
}

size_t conv1d_backward_workspace_bytes(int batch, int64_t seqlen, int D, int K) {
  const int64_t tiles = batch * ((seqlen + kTile - 1) / kTile);
  return static_cast<size_t>(tiles) * D * (K + 1) * sizeof(float);
}

bool conv1d_lowrank_fits(int D, int64_t ld_x, int rank, int64_t ld_a,
                         std::initializer_list<const void*> tensors) {
  return rank > 0 && rank % 16 == 0 && rank <= kConvMaxRank && D % 8 == 0 && ld_x % 8 == 0 &&
         ld_a % 8 == 0 && all_aligned_to(tensors, 16);
}

template <typename T>
void conv1d_silu_backward(T* dx, float* dweight, float* dbias, const T* dout, const T* x,
                          int64_t ld_x, const float* weight, const float* bias, int batch,
                          int64_t seqlen, int D, int K, const ConvLowRank<T>& lowrank,
                          void* workspace, cudaStream_t stream) {
  if (batch == 0 || seqlen == 0 || D == 0) return;
  const bool with_lowrank = lowrank.rank > 0;
  // Where it fits, the layout below takes two channels a thread and 16-byte copies.
  if (with_lowrank &&
      (sizeof(T) != 2 || !conv1d_lowrank_fits(D, ld_x, lowrank.rank, lowrank.ld_a,
                                              {dx, dout, x, lowrank.a, lowrank.weight}))) {
    throw_error("op error: conv1d_silu_backward: a low-rank term of rank ", lowrank.rank, " (ld_a ",
                lowrank.ld_a, ") with D = ", D, ", ld_x = ", ld_x, " in ",
                sizeof(T) == 2 ? "bf16" : "fp32",
                " does not fit the kernel (conv1d_lowrank_fits); accumulate it into dout first");
  }
  float* partial = static_cast<float*>(workspace);
  with_layout<T>(K, D, ld_x, {dx, dout, x}, {dout, x}, [&](auto width, auto channels, auto async) {
    constexpr int Kc = decltype(width)::value;
    constexpr int V = decltype(channels)::value;
    constexpr bool kAsync = decltype(async)::value;
    constexpr int W = kLanes * V;
    constexpr int kXRows = kTile + 2 * (Kc - 1), kGradRows = kTile + Kc - 1;
    static_assert(kRuns * (Kc + 1) * sizeof(float) <= kXRows * sizeof(T),
                  "the runs' terms fit where x was staged");
    const ConvGrid g = conv_grid(batch, seqlen, D, V);
    const size_t smem = (static_cast<size_t>(kXRows) * W + kGradRows * (W + kPad)) * sizeof(T);
    auto launch = [&](auto kernel) {
      allow_shared_memory(kernel, smem, "conv1d_silu_backward_kernel");
      kernel<<<g.blocks, kThreads, smem, stream>>>(dx, partial, dout, x, ld_x, weight, bias, seqlen,
                                                   g.tiles_per_seq, D, g.channel_blocks, lowrank);
    };
    if constexpr (V == 2 && kAsync) {
      static_assert(kLowRankRows * (kConvMaxRank + kPad) <= kXRows * W,
                    "a's rows fit where x is staged later");
      if (with_lowrank) return launch(conv1d_silu_backward_kernel<T, Kc, V, true, true>);
    }
    launch(conv1d_silu_backward_kernel<T, Kc, V, kAsync, false>);
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
                                          int, const ConvLowRank<float>&, void*, cudaStream_t);
template void conv1d_silu_backward<bf16>(bf16*, float*, float*, const bf16*, const bf16*, int64_t,
                                         const float*, const float*, int, int64_t, int, int,
                                         const ConvLowRank<bf16>&, void*, cudaStream_t);

}  // namespace mamba::cuda
