// Residual add + RMSNorm forward and backward; math in kernels/cpu/rmsnorm.h, layout in rmsnorm.h.
//
// Forward: one warp per token row (C is a few thousand at most, so a warp's 32 lanes stride the
// row in coalesced 128-byte steps), the row sum of squares by warp shuffles. With few rows
// (decoding: one per sequence) a warp per row would leave the device idle and walk its row one
// dependent load after another (residual_out may alias residual_in, so loads cannot be hoisted
// over the stores): then one block per row, the row in registers, all loads issued at once.
// Backward: one kernel, bound by memory: a block per tile of kTileRows rows, a warp per row as the
// forward (dresidual needs only its own row's dot product). The first pass over a row, for the dot
// product, also forms the row's dweight terms, which the tile's warps add through shared memory
// into one partial sum per tile; add_column_sums then adds the tiles' partials in a fixed order.
// Why: a separate dweight kernel read dnormed and residual_out from DRAM a second time (150 of
// 550 MB at 16 x 2048 tokens, d_model 768). Re-reading the tile after the row pass would not
// reliably hit the caches either: meanwhile every resident warp reads its own row (48 warps x 132
// SMs x C x 6 bytes: 29 MB at C = 768, 78 MB at C = 2048) while dresidual streams through the
// 50 MB L2. 16 rows a tile: the partials (C floats a tile, written and read back once) stay ~3%
// of the traffic, and 512 blocks at 1.4B. (A block per 64-row tile with a barrier per row left
// the device mostly idle: 128 blocks for 132 SMs.)
// Traffic a row must move (bf16): dnormed 2C, residual_out 4C, dresidual 8C (it accumulates),
// its bf16 copy 2C, partials 0.5C (4C written and read once per 16 rows): 16.5C bytes (fp32: 4C
// of dnormed, no copy, the same). At 32768 x 768 that is 415 MB, ~104 us at 4 TB/s; at 8192 x
// 2048, 277 MB, ~69 us. A warp that reads its row twice (the dot product must be complete before
// the first dresidual) adds 6C from DRAM: 566 MB, which is the measured 142 us at 4.0 TB/s, so
// the re-read, not latency, was the excess at C = 768. Hence, for C % 4 == 0 and C <= 1536, the
// register kernel: each lane holds its C / 32 values of dnormed (as loaded: 2 bytes each in bf16)
// and residual_out from one load of the whole row to its last use, and the second pass reads only
// dresidual (weight, 3-6 KB, is shared by the tile's warps through L1). Its cost is registers:
// 48-64 a thread up to 512 channels (two 512-thread blocks an SM), 89-128 for 768-1536 (one
// block: 16 warps, each with its whole row's loads, 4.6 KB at C = 768, issued at once, so ~74 KB
// in flight per SM against the ~30 KB that Little's law asks at this bandwidth). Larger rows
// would spill (16 chunks spill at the 128-register cap of a 512-thread block) and keep the
// two-pass kernel, as does C % 4 != 0. The dresidual pass loads two chunks before storing them
// (the compiler will not hoist loads over stores that may alias); more loads at once spill.
#include <initializer_list>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/partial_sums.h"
#include "kernels/cuda/rmsnorm.h"

namespace mamba::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // forward: one warp per row
constexpr int64_t kFewRows = 64;  // forward: up to this, a block per row
constexpr int kRowThreads = 256;  // that block
constexpr int kRowValues = 16;    // per thread: C up to 4096
constexpr int kTileRows = 16;     // backward: rows per block (a warp each) and per partial sum

int64_t tiles_for(int64_t rows) {
  return (rows + kTileRows - 1) / kTileRows;
}

// hidden (+ residual_in) at [c, c + V) of a row.
template <int V>
__device__ __forceinline__ void load_sum(const float* h, const float* res, int c, float (&v)[V]) {
  load_vec<V>(h + c, v);
  if (res) {
    float r[V];
    load_vec<V>(res + c, r);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] += r[i];
  }
}

// A warp per row; each lane takes V consecutive channels at a time (V = 4: 16-byte accesses).
template <typename T, int V>
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
  for (int c = lane * V; c < C; c += 32 * V) {
    float v[V];
    load_sum<V>(h, res, c, v);
    if (r) store_vec<V>(r + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) ss += v[i] * v[i];
  }
  ss = warp_sum(ss);
  const float inv = rsqrtf(ss / C + eps);
  if (lane == 0) rstd[t] = inv;
  T* out = normed + t * C;
  for (int c = lane * V; c < C; c += 32 * V) {
    float v[V], w[V];
    if (r) {
      load_vec<V>(r + c, v);
    } else {
      load_sum<V>(h, res, c, v);
    }
    load_vec<V>(weight + c, w);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] = v[i] * inv * w[i];
    store_vec<V>(out + c, v);
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

// d(x_c * r * w_c)/dx_j = r * w_c * [c == j] - x_c * w_c * x_j * r^3 / C, r = rstd. A block per
// tile of kTileRows rows, a warp per row, V consecutive channels per lane at a time, as the
// forward. The first pass over the row (the dot product, which needs every channel before
// dresidual can be written) also forms the row's dweight terms g x r. For each chunk of 32 V
// channels the block's warps leave them in shared memory and after one barrier the first 32 V
// threads add them over the tile's rows in row order into the tile's partial sum: dweight needs
// no second read of dnormed and residual_out. Each warp loads its next chunk before that barrier,
// so two chunks of loads are in flight per warp across it. Shared memory alternates between two
// buffers: a chunk's writes never meet the previous chunk's reads, one barrier per chunk.
template <typename T, int V>
__global__ void __launch_bounds__(kTileRows * 32)
    rmsnorm_backward_kernel(float* partial, float* dresidual, T* dresidual_act, const T* dnormed,
                            const float* residual_out, const float* rstd, const float* weight,
                            int64_t rows, int C) {
  constexpr int kChunk = 32 * V;
  static_assert(kTileRows * 32 >= kChunk, "a thread per channel of a chunk adds the tile's terms");
  __shared__ __align__(16) float terms[2][kTileRows][kChunk];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int tile_rows = static_cast<int>(min(rows - t0, static_cast<int64_t>(kTileRows)));
  const bool has_row = warp < tile_rows;
  const int64_t t = has_row ? t0 + warp : t0;
  const float* x = residual_out + t * C;
  const T* g = dnormed + t * C;
  const float r = rstd[t];
  float dot = 0.0f;
  float gv[V], wv[V], xv[V];
  auto load = [&](int c, float(&gl)[V], float(&wl)[V], float(&xl)[V]) {
    if (has_row && c < C) {
      load_vec<V>(g + c, gl);
      load_vec<V>(weight + c, wl);
      load_vec<V>(x + c, xl);
    }
  };
  load(lane * V, gv, wv, xv);
  float* tile_partial = partial + static_cast<int64_t>(blockIdx.x) * C;
  for (int c0 = 0, buf = 0; c0 < C; c0 += kChunk, buf ^= 1) {
    const int c = c0 + lane * V;
    float gn[V], wn[V], xn[V];  // left unset where not loaded: then never used
    load(c + kChunk, gn, wn, xn);
    float term[V] = {};
    if (has_row && c < C) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        dot += gv[i] * wv[i] * xv[i];
        term[i] = gv[i] * xv[i] * r;
      }
    }
    store_vec<V>(&terms[buf][warp][lane * V], term);
    __syncthreads();
    const int col = c0 + static_cast<int>(threadIdx.x);
    if (threadIdx.x < kChunk && col < C) {
      float acc = 0.0f;
      for (int w = 0; w < tile_rows; ++w) acc += terms[buf][w][threadIdx.x];
      tile_partial[col] = acc;
    }
#pragma unroll
    for (int i = 0; i < V; ++i) {
      gv[i] = gn[i];
      wv[i] = wn[i];
      xv[i] = xn[i];
    }
  }
  if (!has_row) return;
  const float k = warp_sum(dot) * r * r * r / C;
  float* dx = dresidual + t * C;
  T* dx_act = dresidual_act ? dresidual_act + t * C : nullptr;
  for (int c = lane * V; c < C; c += 32 * V) {
    float v[V];
    load_vec<V>(g + c, gv);
    load_vec<V>(weight + c, wv);
    load_vec<V>(x + c, xv);
    load_vec<V>(dx + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] += r * wv[i] * gv[i] - k * xv[i];
    store_vec<V>(dx + c, v);
    if (dx_act) store_vec<V>(dx_act + c, v);
  }
}

// The register path: C <= 128 N with N chunks of 4 channels a lane, the compiled N being
// kRegChunks (the smallest that holds C is taken; lanes past C load nothing). Above the largest,
// or without 4 channels at a time, the kernel above. Register counts (ptxas, sm_90; the file's
// header): up to 4 chunks two blocks an SM fit in 64 registers a thread; 6 to 12 chunks take
// 90-128, one block an SM; 16 chunks (C = 2048) spill at 128, the most a thread of a 512-thread
// block may have, and so are not compiled.
constexpr int kRegChunks[] = {2, 4, 6, 8, 12};
constexpr int kMaxRegChunks = 12;
constexpr int reg_min_blocks(int chunks) {
  return chunks <= 4 ? 2 : 1;
}
// dresidual chunks loaded at once in the last pass: more spill at 6 and 16 chunks.
constexpr int reg_group(int chunks) {
  return chunks < 2 ? chunks : 2;
}

// As rmsnorm_backward_kernel, but the warp keeps its row of dnormed (as loaded: bf16 takes half
// the registers) and residual_out in registers from the one load to the dresidual pass, which
// then reads only dresidual (and weight, which stays in L1). All of the row's loads are issued
// before the first use. Then, in this order: the dot product (needs weight); the dweight terms
// g x r through shared memory, one barrier per chunk as above, with no global load between the
// barriers; the warp sum of the dot product; dresidual in groups of kGroup chunks whose loads are
// all issued before the group's stores (the stores may alias later loads for all the compiler
// knows, so it would not hoist them itself), to keep loads in flight.
template <typename T, int N>
__global__ void __launch_bounds__(kTileRows * 32, reg_min_blocks(N))
    rmsnorm_backward_regs_kernel(float* partial, float* dresidual, T* dresidual_act,
                                 const T* dnormed, const float* residual_out, const float* rstd,
                                 const float* weight, int64_t rows, int C) {
  constexpr int kChunk = 32 * 4;
  constexpr int kGroup = reg_group(N);
  static_assert(kTileRows * 32 >= kChunk, "a thread per channel of a chunk adds the tile's terms");
  using Quad = VecWord<4, T>;
  __shared__ __align__(16) float terms[2][kTileRows][kChunk];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  const int tile_rows = static_cast<int>(min(rows - t0, static_cast<int64_t>(kTileRows)));
  const bool has_row = warp < tile_rows;
  const int64_t t = has_row ? t0 + warp : t0;
  const float* x = residual_out + t * C;
  const T* g = dnormed + t * C;
  const float r = rstd[t];
  // Zero where not loaded (no row for this warp, or past C): such terms and dot terms are 0.
  Quad gq[N] = {};
  float xv[N][4] = {};
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const int c = j * kChunk + lane * 4;
    if (has_row && c < C) {
      gq[j] = *reinterpret_cast<const Quad*>(g + c);
      load_vec<4>(x + c, xv[j]);
    }
  }
  float* tile_partial = partial + static_cast<int64_t>(blockIdx.x) * C;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if (j * kChunk >= C) break;  // the same for the whole block: no thread skips a barrier
    const int c = j * kChunk + lane * 4;
    float gv[4], term[4];
    load_vec<4>(reinterpret_cast<const T*>(&gq[j]), gv);
    if (has_row && c < C) {
      float wv[4];
      load_vec<4>(weight + c, wv);
#pragma unroll
      for (int i = 0; i < 4; ++i) dot += gv[i] * wv[i] * xv[j][i];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) term[i] = gv[i] * xv[j][i] * r;
    store_vec<4>(&terms[j % 2][warp][lane * 4], term);
    __syncthreads();
    const int col = j * kChunk + static_cast<int>(threadIdx.x);
    if (threadIdx.x < kChunk && col < C) {
      float acc = 0.0f;
      for (int w = 0; w < tile_rows; ++w) acc += terms[j % 2][w][threadIdx.x];
      tile_partial[col] = acc;
    }
  }
  if (!has_row) return;
  const float k = warp_sum(dot) * r * r * r / C;
  float* dx = dresidual + t * C;
  T* dx_act = dresidual_act ? dresidual_act + t * C : nullptr;
#pragma unroll
  for (int j0 = 0; j0 < N; j0 += kGroup) {
    float dv[kGroup][4];
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      const int c = (j0 + u) * kChunk + lane * 4;
      if (j0 + u < N && c < C) load_vec<4>(dx + c, dv[u]);
    }
#pragma unroll
    for (int u = 0; u < kGroup; ++u) {
      const int j = j0 + u;
      const int c = j * kChunk + lane * 4;
      if (j < N && c < C) {
        float gv[4], wv[4];
        load_vec<4>(reinterpret_cast<const T*>(&gq[j]), gv);
        load_vec<4>(weight + c, wv);
#pragma unroll
        for (int i = 0; i < 4; ++i) dv[u][i] += r * wv[i] * gv[i] - k * xv[j][i];
        store_vec<4>(dx + c, dv[u]);
        if (dx_act) store_vec<4>(dx_act + c, dv[u]);
      }
    }
  }
}

// Whether the row kernels may take 4 channels per lane at a time: whole groups of 4 per row and
// every row of every tensor aligned for one load of them.
template <typename T>
bool four_at_a_time(int C, std::initializer_list<const void*> f32,
                    std::initializer_list<const void*> act) {
  return C % 4 == 0 && all_aligned_to(f32, 4 * sizeof(float)) && all_aligned_to(act, 4 * sizeof(T));
}

// The register kernel with the fewest chunks (from kRegChunks) that hold C <= 128 kMaxRegChunks.
template <typename T, int I = 0, typename... Args>
void launch_backward_regs(int C, unsigned blocks, cudaStream_t stream, Args... args) {
  constexpr int N = kRegChunks[I];
  if constexpr (N < kMaxRegChunks) {
    if (C > 128 * N) {
      launch_backward_regs<T, I + 1>(C, blocks, stream, args...);
      return;
    }
  }
  rmsnorm_backward_regs_kernel<T, N><<<blocks, kTileRows * 32, 0, stream>>>(args...);
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
  if (four_at_a_time<T>(C, {residual_out, hidden, residual_in, weight}, {normed})) {
    residual_rmsnorm_forward_kernel<T, 4><<<blocks, kRowsPerBlock * 32, 0, stream>>>(
        residual_out, normed, rstd, hidden, residual_in, weight, rows, C, eps);
  } else {
    residual_rmsnorm_forward_kernel<T, 1><<<blocks, kRowsPerBlock * 32, 0, stream>>>(
        residual_out, normed, rstd, hidden, residual_in, weight, rows, C, eps);
  }
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
  const int64_t tiles = tiles_for(rows);
  float* partial = static_cast<float*>(workspace);
  const auto blocks = static_cast<unsigned>(tiles);
  const bool four =
      four_at_a_time<T>(C, {dresidual, residual_out, weight}, {dresidual_act, dnormed});
  if (four && C <= 128 * kMaxRegChunks) {
    launch_backward_regs<T>(C, blocks, stream, partial, dresidual, dresidual_act, dnormed,
                            residual_out, rstd, weight, rows, C);
  } else if (four) {
    rmsnorm_backward_kernel<T, 4><<<blocks, kTileRows * 32, 0, stream>>>(
        partial, dresidual, dresidual_act, dnormed, residual_out, rstd, weight, rows, C);
  } else {
    rmsnorm_backward_kernel<T, 1><<<blocks, kTileRows * 32, 0, stream>>>(
        partial, dresidual, dresidual_act, dnormed, residual_out, rstd, weight, rows, C);
  }
  check_launch("rmsnorm_backward_kernel");
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
