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
// the re-read, not latency, was the excess at C = 768 (at 1.4B: 377 MB in 115 us, 3.3 TB/s, 512
// blocks in 1.3 waves of 396). Hence the register kernel, for C % 4 == 0 up to 2048 (bf16; fp32
// 1536): each lane holds its C / 32 values of dnormed (as loaded: 2 bytes each in bf16) and
// residual_out from one load of the whole row to their last use, so the dresidual pass reads only
// dresidual. Its cost is registers (listed at kRegChunks, no spills): two 512-thread blocks an SM
// at 64 registers up to C = 768 in bf16 (512 in fp32), one above (128 registers at C = 2048: 16
// warps, 4 waves of 132 blocks at 1.4B). Bytes in flight an SM: every warp issues its whole row's
// loads at once (4.6 KB at C = 768, 12 KB at 2048), 74-196 KB a block against the ~30 KB that
// Little's law asks at ~4 TB/s; the dresidual pass keeps fewer (two chunks a warp), hidden by the
// other block or, with one block an SM, by an L2 prefetch of the row (see the kernel). Larger C
// (they would spill) and C % 4 != 0 keep the two-pass kernel.
#include <initializer_list>
#include <type_traits>

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

// The row a warp takes in its block's tile of kTileRows rows. Warps past the rows of a short last
// tile have none (has_row false): they point at the tile's first row, so that their loads stay in
// bounds, and only join the barriers.
template <typename T>
struct WarpRow {
  int tile_rows;  // rows in the tile
  bool has_row;
  int64_t t;       // the row
  const float* x;  // its residual_out
  const T* g;      // its dnormed
  float r;         // its rstd
};
template <typename T>
__device__ __forceinline__ WarpRow<T> warp_row(int64_t rows, int C, const T* dnormed,
                                               const float* residual_out, const float* rstd) {
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * kTileRows;
  WarpRow<T> w;
  w.tile_rows = static_cast<int>(min(rows - t0, static_cast<int64_t>(kTileRows)));
  w.has_row = static_cast<int>(threadIdx.x / 32) < w.tile_rows;
  w.t = w.has_row ? t0 + threadIdx.x / 32 : t0;
  w.x = residual_out + w.t * C;
  w.g = dnormed + w.t * C;
  w.r = rstd[w.t];
  return w;
}

// Once a chunk's dweight terms (columns c0 .. c0 + kChunk - 1 of each of the tile's rows) are in
// shared memory: one thread a column adds them over the tile's rows, in row order, into the tile's
// partial sum.
template <int kChunk>
__device__ __forceinline__ void add_tile_terms(float* tile_partial,
                                               const float (&terms)[kTileRows][kChunk],
                                               int tile_rows, int c0, int C) {
  const int col = c0 + static_cast<int>(threadIdx.x);
  if (threadIdx.x < kChunk && col < C) {
    float acc = 0.0f;
    for (int w = 0; w < tile_rows; ++w) acc += terms[w][threadIdx.x];
    tile_partial[col] = acc;
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
  const WarpRow<T> my = warp_row(rows, C, dnormed, residual_out, rstd);
  float dot = 0.0f;
  float gv[V], wv[V], xv[V];
  auto load = [&](int c, float(&gl)[V], float(&wl)[V], float(&xl)[V]) {
    if (my.has_row && c < C) {
      load_vec<V>(my.g + c, gl);
      load_vec<V>(weight + c, wl);
      load_vec<V>(my.x + c, xl);
    }
  };
  load(lane * V, gv, wv, xv);
  float* tile_partial = partial + static_cast<int64_t>(blockIdx.x) * C;
  for (int c0 = 0, buf = 0; c0 < C; c0 += kChunk, buf ^= 1) {
    const int c = c0 + lane * V;
    float gn[V], wn[V], xn[V];  // left unset where not loaded: then never used
    load(c + kChunk, gn, wn, xn);
    float term[V] = {};
    if (my.has_row && c < C) {
#pragma unroll
      for (int i = 0; i < V; ++i) {
        dot += gv[i] * wv[i] * xv[i];
        term[i] = gv[i] * xv[i] * my.r;
      }
    }
    store_vec<V>(&terms[buf][warp][lane * V], term);
    __syncthreads();
    add_tile_terms(tile_partial, terms[buf], my.tile_rows, c0, C);
#pragma unroll
    for (int i = 0; i < V; ++i) {
      gv[i] = gn[i];
      wv[i] = wn[i];
      xv[i] = xn[i];
    }
  }
  if (!my.has_row) return;
  const float k = warp_sum(dot) * my.r * my.r * my.r / C;
  float* dx = dresidual + my.t * C;
  T* dx_act = dresidual_act ? dresidual_act + my.t * C : nullptr;
  for (int c = lane * V; c < C; c += 32 * V) {
    float v[V];
    load_vec<V>(my.g + c, gv);
    load_vec<V>(weight + c, wv);
    load_vec<V>(my.x + c, xv);
    load_vec<V>(dx + c, v);
#pragma unroll
    for (int i = 0; i < V; ++i) v[i] += my.r * wv[i] * gv[i] - k * xv[i];
    store_vec<V>(dx + c, v);
    if (dx_act) store_vec<V>(dx_act + c, v);
  }
}

// The register path: C <= 128 N with N chunks of 4 channels a lane, N from kRegChunks (the
// smallest that holds C; lanes past C load nothing). Registers (ptxas -v, sm_90, no spills): bf16
// 48, 64, 64 at 2, 4, 6 chunks (two 512-thread blocks an SM: at most 64 a thread), 96, 128, 128 at
// 8, 12, 16 (one block: at most 128); fp32 holds 4 bytes of dnormed a channel, not 2: 56, 64 at 2,
// 4 chunks, 94, 114, 128 at 6, 8, 12, and 16 chunks would need all 128 registers for the row.
constexpr int kRegChunks[] = {2, 4, 6, 8, 12, 16};
template <typename T>
constexpr int max_reg_chunks() {
  return sizeof(T) == 2 ? 16 : 12;
}
// Two blocks an SM while the row (per chunk 4 registers of residual_out, sizeof(T) of dnormed)
// takes at most 36 of the 64 registers: bf16 up to 6 chunks (C = 768), fp32 up to 4.
template <typename T>
constexpr int reg_min_blocks(int chunks) {
  return chunks * (4 + static_cast<int>(sizeof(T))) <= 36 ? 2 : 1;
}
// Hides w's value from the compiler (no instruction): the fp32 values converted from a bf16 word
// cannot be kept from one use to the next, so dnormed stays in registers as loaded, two channels a
// register, not one (without this, 6 chunks in bf16 spilled at 64 registers).
__device__ __forceinline__ void opaque(uint2& w) {
  asm volatile("" : "+r"(w.x), "+r"(w.y));
}
__device__ __forceinline__ void opaque(uint4& w) {
  asm volatile("" : "+r"(w.x), "+r"(w.y), "+r"(w.z), "+r"(w.w));
}
// Asks L2 for `bytes` (a multiple of 16) from p (16-byte aligned) without waiting for them or
// holding registers for them. A hint only: before compute capability 9.0 it does nothing.
__device__ __forceinline__ void prefetch_l2(const void* p, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(__cvta_generic_to_global(p)),
               "r"(bytes)
               : "memory");
#endif
}

// As rmsnorm_backward_kernel, but each warp loads its row of dnormed (kept as loaded: bf16 in
// half the registers) and residual_out once, all chunks at once, and keeps it in registers until
// the dresidual pass, which then reads only dresidual (and weight, 3-8 KB shared by the tile
// through L1). Per chunk, as above: the dot product terms, the dweight terms g x r through shared
// memory (double-buffered, one barrier; the loop has no global load to wait for between
// barriers). Then the dresidual pass, two chunks' loads issued before their stores (the stores
// may alias later loads for all the compiler knows, so it would not hoist them; more spill). With
// one block an SM nothing overlaps that pass's loads, which would then wait on DRAM one or two
// chunks at a time (1 KB a warp, 16 KB an SM, half what Little's law asks): so lane 0 has L2 fetch
// the row of dresidual once the row's own loads have arrived (at the first chunk's terms), and the
// pass reads it from L2 a few microseconds later (at most 132 x 16 rows x 8 KB = 17 MB of the 50
// MB L2 waiting at C = 2048; the DRAM bytes are the same). With two blocks an SM the other block
// streams meanwhile, and the prefetch's address registers would spill at 6 chunks.
template <typename T, int N>
__global__ void __launch_bounds__(kTileRows * 32, reg_min_blocks<T>(N))
    rmsnorm_backward_regs_kernel(float* partial, float* dresidual, T* dresidual_act,
                                 const T* dnormed, const float* residual_out, const float* rstd,
                                 const float* weight, int64_t rows, int C) {
  constexpr int kChunk = 32 * 4;
  constexpr int kGroup = N < 2 ? N : 2;
  static_assert(kTileRows * 32 >= kChunk, "a thread per channel of a chunk adds the tile's terms");
  using Quad = VecWord<4, T>;
  __shared__ __align__(16) float terms[2][kTileRows][kChunk];
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const WarpRow<T> my = warp_row(rows, C, dnormed, residual_out, rstd);
  // Zero where not loaded (no row for this warp, or past C): such terms and dot terms are 0.
  Quad gq[N] = {};
  float xv[N][4] = {};
  float dot = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const int c = j * kChunk + lane * 4;
    if (my.has_row && c < C) {
      gq[j] = *reinterpret_cast<const Quad*>(my.g + c);
      load_vec<4>(my.x + c, xv[j]);
    }
  }
  float* tile_partial = partial + static_cast<int64_t>(blockIdx.x) * C;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    if (j * kChunk >= C) break;  // the same for the whole block: no thread skips a barrier
    const int c = j * kChunk + lane * 4;
    float gv[4], term[4];
    opaque(gq[j]);
    load_vec<4>(reinterpret_cast<const T*>(&gq[j]), gv);
    if (my.has_row && c < C) {
      float wv[4];
      load_vec<4>(weight + c, wv);
#pragma unroll
      for (int i = 0; i < 4; ++i) dot += gv[i] * wv[i] * xv[j][i];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) term[i] = gv[i] * xv[j][i] * my.r;
    store_vec<4>(&terms[j % 2][warp][lane * 4], term);
    if constexpr (reg_min_blocks<T>(N) == 1) {
      if (j == 0 && my.has_row && lane == 0)
        prefetch_l2(dresidual + my.t * C, static_cast<uint32_t>(C * sizeof(float)));
    }
    __syncthreads();
    add_tile_terms(tile_partial, terms[j % 2], my.tile_rows, j * kChunk, C);
  }
  if (!my.has_row) return;
  const float k = warp_sum(dot) * my.r * my.r * my.r / C;
  float* dx = dresidual + my.t * C;
  T* dx_act = dresidual_act ? dresidual_act + my.t * C : nullptr;
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
        opaque(gq[j]);
        load_vec<4>(reinterpret_cast<const T*>(&gq[j]), gv);
        load_vec<4>(weight + c, wv);
#pragma unroll
        for (int i = 0; i < 4; ++i) dv[u][i] += my.r * wv[i] * gv[i] - k * xv[j][i];
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

// Calls f with the channels a lane takes at a time, 4 or 1, as a compile-time constant.
template <typename F>
void with_channels_per_lane(bool four, F&& f) {
  if (four) {
    f(std::integral_constant<int, 4>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

// The register kernel with the fewest chunks (from kRegChunks) that hold C <= 128
// max_reg_chunks<T>().
template <typename T, int I = 0, typename... Args>
void launch_backward_regs(int C, unsigned blocks, cudaStream_t stream, Args... args) {
  constexpr int N = kRegChunks[I];
  if constexpr (N < max_reg_chunks<T>()) {
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
  with_channels_per_lane(
      four_at_a_time<T>(C, {residual_out, hidden, residual_in, weight}, {normed}), [&](auto v) {
        residual_rmsnorm_forward_kernel<T, decltype(v)::value>
            <<<blocks, kRowsPerBlock * 32, 0, stream>>>(residual_out, normed, rstd, hidden,
                                                        residual_in, weight, rows, C, eps);
      });
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
  if (four && C <= 128 * max_reg_chunks<T>()) {
    launch_backward_regs<T>(C, blocks, stream, partial, dresidual, dresidual_act, dnormed,
                            residual_out, rstd, weight, rows, C);
  } else {
    with_channels_per_lane(four, [&](auto v) {
      rmsnorm_backward_kernel<T, decltype(v)::value><<<blocks, kTileRows * 32, 0, stream>>>(
          partial, dresidual, dresidual_act, dnormed, residual_out, rstd, weight, rows, C);
    });
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
