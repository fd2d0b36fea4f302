// Selective scan (Mamba-1), forward and backward, on the GPU. The function is the CPU twin's
// (kernels/cpu/scan.h): for batch b, channel d, state n < 16, step t of the sequence,
//   dt[t]    = softplus(delta[t, d] + delta_bias[d])
//   h[t, n]  = exp(dt[t] A[d, n]) h[t-1, n] + dt[t] B[t, n] u[t, d]          (h[-1] = 0)
//   out[t,d] = (sum_n C[t, n] h[t, n] + D[d] u[t, d]) * silu(z[t, d])
// Token-major layouts, rows t = b * seqlen + s: u, delta, out [T, d_inner]; z [T, ld_z];
// B, C [T, ld_bc]. 64-bit offsets throughout.
//
// Why it is fast. The work is 16 exps per (token, channel) per pass; the exp unit (16 per clock
// per SM) is the scarcest resource and issue slots the next, so the design spends as few exps and
// instructions per state as it can, and keeps enough warps on each SM to hide the latency of the
// rest (one thread per channel gives only 6-8 warps per SM at the model's shapes, and a warp then
// issues an instruction every 4 cycles):
// - Four threads own one channel, four of its 16 states each, in registers, and run the
//   recurrence sequentially (no parallel scan, which would double the work). A block holds 64
//   consecutive channels of one sequence (256 threads); B and C of each step are loaded once per
//   block into shared memory and broadcast. A warp holds 8 channels: lane = 8 * group + channel,
//   so the sums over a channel's four threads and over the warp's channels are lane exchanges.
// - Inputs stream through shared memory in chunks of kL = 16 steps with cp.async. Per-element
//   work (softplus, sigmoid, gating) is done for the whole chunk before the recurrence, each thread
//   taking 4 elements, so it is spread over all threads and stays off the recurrence's critical
//   path; per-element outputs are formed after each pass the same way, from the sums over each
//   channel's four threads.
// - The forward writes the state at every chunk start (checkpoints, in the activation type: the
//   bf16 path stores them in bf16, which halves the largest tensor a layer keeps for backward
//   and perturbs the recomputed states by bf16 rounding, as storing u or delta in bf16 does). The
//   backward walks the chunks in reverse: pass A recomputes the states forward through the chunk
//   (one exp per state), emitting dz and the dC partial sums and keeping the state every kGroup = 4
//   steps in shared memory; the reverse pass then, per group, recomputes the decays (second exp),
//   rebuilds the group's states in registers with FMAs only, and runs the adjoint recurrence
//   backwards. 3 exps per element for forward + backward, and never a reverse recurrence by
//   division.
// - The backward also exists with one thread per channel and all 16 states in registers (64
//   threads per block): fewer instructions and shared-memory accesses per element, so once there
//   are enough blocks to give every scheduler a few of its warps it is the faster one where the
//   4-state blocks would take between one and two waves (make_plan).
// - When batch * d_inner is too small to fill the GPU, each sequence is cut into segments scanned
//   in parallel: a first pass scans each segment from a zero state (forward) or a zero adjoint
//   (backward), and each block then composes the exact entry state from those partial results
//   before its real pass (one more exp per element, only where it is needed). The first pass
//   copies only what it reads (Reads) and the backward's runs more blocks per SM.
// - Reductions are deterministic: dB and dC are summed over a warp's channels with shuffles (each
//   thread keeps its states in a lane-dependent order so that the exchanges need (almost) no
//   selects), over the block's warps through shared memory, and over channel blocks by a last
//   kernel, always in the same order; dA, dD and d(delta_bias) are per-thread sums over time, then
//   summed over (batch, segment) in order. No atomics.
// - exp(x) is computed as exp2(x * log2 e) with A pre-scaled by log2 e: one MUFU op per state.
#include <cuda_pipeline.h>

#include <algorithm>

#include "kernels/cuda/act_type.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/scan.h"
#include "util/error.h"

namespace mamba::cuda {
namespace {

constexpr int kN = 16;                    // d_state
constexpr int kL = kScanCheckpointEvery;  // steps per chunk, between two checkpoints
constexpr int kCh = 64;                   // channels per block
constexpr int kSplit = 4;                 // threads per channel
constexpr int kS = kN / kSplit;           // states per thread: one float4 group
constexpr int kThreads = kCh * kSplit;
constexpr int kWarps = kThreads / 32;
constexpr int kPairRows = kThreads / (kCh / 2);  // steps covered when every thread takes a pair
constexpr int kGroup = 4;                  // backward: steps whose states are rebuilt in registers
constexpr int kFwdStages = 2;              // forward: chunks in flight
constexpr int kFwdBlocksPerSM = 4;         // 64 registers, 48 KB of shared memory
constexpr int kBwdBlocksPerSM = 3;         // 80 registers, 69 KB of shared memory
constexpr int kBwdLocalBlocksPerSM = 4;    // its segment pass: 64 registers, 39 KB
constexpr int kThreads16 = kCh;            // the 16-state backward: one thread per channel
constexpr int kBwd16BlocksPerSM = 4;       // its shared memory allows four blocks per SM
constexpr int64_t kMaxSegmentSteps = 768;  // longest segment when short of blocks (make_plan)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

template <typename T>
__device__ __forceinline__ void store(T* p, float x) {
  *p = from_f32<T>(x);
}

// softplus(x) = log(1 + e^x), PyTorch's (x above 20 passes through), and its derivative
// sigmoid(x) = e^x / (1 + e^x). log1p(e) by its series below 1/8 (truncation under 1e-8
// relative) and by the fast log2 above, whose absolute error 2^-22 is at most 1.4e-6 relative
// there; fast-math's log alone would lose all relative precision for small e.
struct Softplus {
  float value, grad;
};
__device__ __forceinline__ Softplus softplus(float x) {
  const float e = exp2f(fminf(x, 20.f) * kLog2e);
  const float one_e = 1.f + e;
  float p = fmaf(e, -1.f / 8, 1.f / 7);
  p = fmaf(e, p, -1.f / 6);
  p = fmaf(e, p, 1.f / 5);
  p = fmaf(e, p, -1.f / 4);
  p = fmaf(e, p, 1.f / 3);
  p = fmaf(e, p, -1.f / 2);
  p = fmaf(e, p, 1.f);
  const float log1p_e = e < 0.125f ? e * p : __log2f(one_e) * kLn2;
  return {x > 20.f ? x : log1p_e, x > 20.f ? 1.f : e / one_e};
}
__device__ __forceinline__ float sigmoid(float x) {
  return 1.f / (1.f + exp2f(-x * kLog2e));
}

template <typename T>
struct Args {
  const T *u, *delta, *z, *dout, *B, *C;
  const float *A, *D, *delta_bias;
  T *out, *du, *ddelta, *dz;
  float* last_state;
  void* ckpt;
  float *seg_state, *seg_sum;             // per (batch, segment, channel): partial scan results
  float* part_dbc;                        // [2][dblocks][tokens][kN]: dB then dC, per channel block
  float *part_dA, *part_dD, *part_dbias;  // per (batch, segment, channel)
  int64_t seqlen, ld_z, ld_bc, tokens;
  int d_inner, nchunks, dblocks, segments, chunks_per_seg;
  bool vec;  // every row and every per-element tensor is 16-byte aligned: 16-byte copies, and
             // one access for both elements of a pair (d_inner is even)
};

// Where a thread works. In the recurrences: channel `channel()` of the block, states
// kS * group() .. + kS - 1. In the per-element work before and after them: the two channels of
// its ElementPair at steps pair_step(k), k < kL / kPairRows (one 4- or 8-byte access moves both
// elements of a step).
__device__ __forceinline__ int group() {
  return threadIdx.x >> 3 & (kSplit - 1);
}
__device__ __forceinline__ int channel() {
  return (threadIdx.x >> 5) * 8 + (threadIdx.x & 7);
}
__device__ __forceinline__ int pair_step(int k) {
  return threadIdx.x / (kCh / 2) + k * kPairRows;
}

// Shared-memory arrays of 16-byte values per channel hold channel c at slot(c) = c with bit 0
// flipped where bit 3 is set. A 16-byte access is served eight lanes at a time, and both the
// recurrence's (eight consecutive channels) and the pairs' (one channel of each of eight
// consecutive pairs) then meet eight different bank groups.
__device__ __forceinline__ int slot(int c) {
  return c ^ (c >> 3 & 1);
}

struct ElementPair {
  int p, c, d;          // the pair within the block, its first channel there and in d_inner
  int slot[2];          // the slots of channels c and c + 1
  bool on[2];           // channels c and c + 1 exist
  float D[2], bias[2];  // their D and delta_bias (0 where they do not exist)
};

template <typename T>
__device__ __forceinline__ ElementPair element_pair(const Args<T>& a, int d0) {
  ElementPair e;
  e.p = threadIdx.x % (kCh / 2);
  e.c = 2 * e.p;
  e.d = d0 + e.c;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    e.slot[i] = slot(e.c + i);
    e.on[i] = e.d + i < a.d_inner;
    e.D[i] = e.on[i] ? a.D[e.d + i] : 0.f;
    e.bias[i] = e.on[i] ? a.delta_bias[e.d + i] : 0.f;
  }
  return e;
}

// Stores a pair's values at p (its first channel): one access when vec (then both exist or
// neither), else one per existing channel.
template <typename T>
__device__ __forceinline__ void store_pair(T* p, const float (&v)[2], const ElementPair& e,
                                           bool vec) {
  if (vec) {
    if (e.on[0]) store_vec<2>(p, v);
  } else {
    if (e.on[0]) store(p, v[0]);
    if (e.on[1]) store(p + 1, v[1]);
  }
}

// The backward keeps a thread's states in a lane-dependent order: register k holds state
// k ^ perm() of its group, perm = lane bits 2..1. channel_sum then always finds the state it
// keeps in the partner's other half (see there). Loads and stores of per-state data permute the
// same way (xor is its own inverse); everything in memory is in natural order.
__device__ __forceinline__ int perm() {
  return threadIdx.x >> 1 & 3;
}
__device__ __forceinline__ void permute(float (&r)[kS], float4 v, int p) {
  const bool hi = p & 2, odd = p & 1;
  const float a0 = hi ? v.z : v.x, a1 = hi ? v.w : v.y, a2 = hi ? v.x : v.z, a3 = hi ? v.y : v.w;
  r[0] = odd ? a1 : a0, r[1] = odd ? a0 : a1, r[2] = odd ? a3 : a2, r[3] = odd ? a2 : a3;
}

// Sums v over the warp's 8 channels for each of this thread's states (lanes that differ in bits
// 2..0 hold the same group of other channels). Each of the first two exchanges halves the values
// a lane holds; thanks to the register order the partner holds this lane's kept states in its
// other half, so no selects. Lane l ends with state perm() of its group, as do l ^ 1; the order of
// the sums is fixed.
__device__ __forceinline__ float channel_sum(const float (&v)[kS]) {
  const float a0 = v[0] + __shfl_xor_sync(~0u, v[2], 4);
  const float a1 = v[1] + __shfl_xor_sync(~0u, v[3], 4);
  const float b = a0 + __shfl_xor_sync(~0u, a1, 2);
  return b + __shfl_xor_sync(~0u, b, 1);
}

__device__ __forceinline__ void unpack(float (&r)[kS], float4 v) {
  r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
}

// The raw inputs of one chunk for a block's channels, as they are in memory.
template <typename T, int kInputs>
struct alignas(16) Tile {
  T x[kInputs][kL][kCh];  // u, delta, z, dout (the first kInputs of them)
  T bc[kL][2 * kN];       // B then C of each step
};

// What a pass reads of each chunk, as bits (u, delta, z and dout are bits 0 to 3, their order in
// Tile::x). The segment passes need less than the full ones: the forward's neither z nor C, the
// backward's neither u nor B.
enum Reads : unsigned { kU = 1, kDelta = 2, kZ = 4, kDout = 8, kB = 16, kC = 32 };
template <bool kLocal>
constexpr unsigned kFwdReads = kLocal ? kU | kDelta | kB : kU | kDelta | kZ | kB | kC;
template <bool kLocal>
constexpr unsigned kBwdReads =
    kLocal ? kDelta | kZ | kDout | kC : kU | kDelta | kZ | kDout | kB | kC;

// Calls f(i) for each i < kCount that falls to this thread of kBlock (i = threadIdx.x +
// j * kBlock). Not unrolled: the address arithmetic of every copy, hoisted out of the chunk loop,
// would spill.
template <int kBlock, int kCount, typename F>
__device__ __forceinline__ void for_my_indices(F f) {
#pragma unroll 1
  for (int j = 0; j < (kCount + kBlock - 1) / kBlock; ++j) {
    const int i = threadIdx.x + j * kBlock;
    if (kCount % kBlock == 0 || i < kCount) f(i);
  }
}

// B and C of a step: the values of tile.bc[s] that a pass with kReads reads, [first, first +
// count).
template <unsigned kReads>
struct BcSpan {
  static_assert(kReads & (kB | kC), "a pass reads B or C");
  static constexpr int first = kReads & kB ? 0 : kN;
  static constexpr int count = (kReads & kB ? kN : 0) + (kReads & kC ? kN : 0);
};

// Queues the copy of what kReads names of chunk rows [t0, t0 + steps) into `tile` as one cp.async
// group, shared among the block's kBlock threads. Slots past the sequence or past d_inner, and
// what kReads leaves out, are left as they were: readers mask or skip them.
template <int kBlock, unsigned kReads, typename T, int kInputs>
__device__ void load_tile(Tile<T, kInputs>& tile, const Args<T>& a, int64_t t0, int steps, int d0) {
  const T* const src[4] = {a.u, a.delta, a.z, a.dout};
  const int64_t ld[4] = {a.d_inner, a.d_inner, a.ld_z, a.d_inner};
  using Bc = BcSpan<kReads>;
  if (a.vec) {
    constexpr int kV = 16 / sizeof(T);  // elements per 16-byte copy
    constexpr int kRow = kCh / kV;
#pragma unroll
    for (int k = 0; k < kInputs; ++k) {
      if (!(kReads & (1u << k))) continue;
      for_my_indices<kBlock, kL * kRow>([&](int i) {
        const int s = i / kRow, c = i % kRow * kV;
        if (s < steps && d0 + c < a.d_inner)
          __pipeline_memcpy_async(&tile.x[k][s][c], src[k] + (t0 + s) * ld[k] + d0 + c, 16);
      });
    }
    constexpr int kCopies = Bc::count / kV;  // per step
    for_my_indices<kBlock, kL * kCopies>([&](int i) {
      const int s = i / kCopies, j = Bc::first + i % kCopies * kV;
      if (s < steps) {
        const T* p = (j < kN ? a.B : a.C) + (t0 + s) * a.ld_bc + j % kN;
        __pipeline_memcpy_async(&tile.bc[s][j], p, 16);
      }
    });
  } else {
#pragma unroll
    for (int k = 0; k < kInputs; ++k) {
      if (!(kReads & (1u << k))) continue;
      for_my_indices<kBlock, kL * kCh>([&](int i) {
        const int s = i / kCh, c = i % kCh;
        if (s < steps && d0 + c < a.d_inner) tile.x[k][s][c] = src[k][(t0 + s) * ld[k] + d0 + c];
      });
    }
    for_my_indices<kBlock, kL * Bc::count>([&](int i) {
      const int s = i / Bc::count, j = Bc::first + i % Bc::count;
      if (s < steps) tile.bc[s][j] = (j < kN ? a.B : a.C)[(t0 + s) * a.ld_bc + j % kN];
    });
  }
  __pipeline_commit();
}

// Four states in the activation type, stored and loaded as one vector.
template <typename T>
struct alignas(4 * sizeof(T)) Quad {
  T v[4];
};

// The state of channel d at the start of chunk c: [batch][chunk][state / 4][d_inner] quads.
template <typename T>
__device__ __forceinline__ Quad<T>* checkpoint(const Args<T>& a, int b, int c, int d, int group) {
  return static_cast<Quad<T>*>(a.ckpt) +
         ((static_cast<int64_t>(b) * a.nchunks + c) * (kN / 4) + group) * a.d_inner + d;
}
template <typename T>
__device__ __forceinline__ void store_checkpoint(Quad<T>* p, const float (&h)[4]) {
  *p = Quad<T>{{from_f32<T>(h[0]), from_f32<T>(h[1]), from_f32<T>(h[2]), from_f32<T>(h[3])}};
}
template <typename T>
__device__ __forceinline__ float4 load_checkpoint(const Quad<T>* p) {
  const Quad<T> q = *p;
  return make_float4(to_f32(q.v[0]), to_f32(q.v[1]), to_f32(q.v[2]), to_f32(q.v[3]));
}

template <typename T>
__device__ __forceinline__ int steps_in_chunk(const Args<T>& a, int c) {
  return static_cast<int>(min(static_cast<int64_t>(kL), a.seqlen - static_cast<int64_t>(c) * kL));
}

// Where a block works: batch b, channels d0 .. d0 + kCh - 1 (channel block dblock), segment seg,
// whose chunks are c_begin .. c_end - 1; row tok0 is the batch's first token.
struct BlockPos {
  int b, dblock, d0, seg, c_begin, c_end;
  int64_t tok0;
};

template <typename T>
__device__ __forceinline__ BlockPos block_pos(const Args<T>& a, int seg) {
  BlockPos p;
  p.b = blockIdx.x / a.dblocks;
  p.dblock = blockIdx.x % a.dblocks;
  p.d0 = p.dblock * kCh;
  p.seg = seg;
  p.c_begin = seg * a.chunks_per_seg;
  p.c_end = min(p.c_begin + a.chunks_per_seg, a.nchunks);
  p.tok0 = static_cast<int64_t>(p.b) * a.seqlen;
  return p;
}

// The first row of chunk c.
__device__ __forceinline__ int64_t chunk_row(const BlockPos& pos, int c) {
  return pos.tok0 + static_cast<int64_t>(c) * kL;
}

// Queues the copy of chunk c into `tile` (load_tile).
template <int kBlock, unsigned kReads, typename T, int kInputs>
__device__ __forceinline__ void load_chunk(Tile<T, kInputs>& tile, const Args<T>& a,
                                           const BlockPos& pos, int c) {
  load_tile<kBlock, kReads>(tile, a, chunk_row(pos, c), steps_in_chunk(a, c), pos.d0);
}

// What kReads names of B and C in the chunk as fp32, in natural order (bc[s]: B then C), zero
// past the end of the sequence (stale slots could hold NaNs).
template <int kBlock, unsigned kReads, typename T, int kInputs>
__device__ __forceinline__ void convert_bc(float4 (&bc)[kL][2][kN / 4],
                                           const Tile<T, kInputs>& tile, int steps) {
  using Bc = BcSpan<kReads>;
  for_my_indices<kBlock, kL * Bc::count>([&](int j) {
    const int s = j / Bc::count, n = Bc::first + j % Bc::count;
    (&bc[s][0][0].x)[n] = s < steps ? to_f32(tile.bc[s][n]) : 0.f;
  });
}

// The block's partial sums of dB (q = 0) or dC (q = 1), [tokens][kN] each.
template <typename T>
__device__ __forceinline__ float* dbc_partials(const Args<T>& a, const BlockPos& pos, int q) {
  return a.part_dbc + (static_cast<int64_t>(q) * a.dblocks + pos.dblock) * a.tokens * kN;
}

// Index of (batch b, segment r, channel d) in the per-segment buffers.
template <typename T>
__device__ __forceinline__ int64_t seg_index(const Args<T>& a, int b, int r, int d) {
  return (static_cast<int64_t>(b) * a.segments + r) * a.d_inner + d;
}

template <typename T, bool kLocal>
struct FwdSmem {
  static constexpr int kInputs = kLocal ? 2 : 3;  // u, delta (, z)
  static constexpr int kOut = kLocal ? 1 : kL;    // the local pass forms no output
  Tile<T, kInputs> tiles[kFwdStages];
  float4 bc[kL][2][kN / kS];   // B, C as fp32, by state group
  float2 dt[kL][kCh];          // dt and dt * u
  float4 y[kOut][kCh];         // C h summed over each of the channel's four threads, by slot()
  float2 gate[kOut][kCh / 2];  // silu(z) of each pair's channels: out = y gate + dug
  float2 dug[kOut][kCh / 2];   // D u silu(z)
};

// Forward. kLocal: scan each segment but the last from a zero state and store its end state and
// the sum of its dt (the segment's decay is exp(A * sum)). Otherwise: start from the state that
// the earlier segments' local results compose to, write out, the checkpoints and last_state.
template <typename T, bool kLocal>
__global__ void __launch_bounds__(kThreads, kFwdBlocksPerSM) scan_fwd_kernel(const Args<T> a) {
  using Smem = FwdSmem<T, kLocal>;
  constexpr unsigned kReads = kFwdReads<kLocal>;
  extern __shared__ float4 smem_raw[];
  Smem& sm = *reinterpret_cast<Smem*>(smem_raw);
  const int g = group(), ch = channel(), cs = slot(ch);
  const BlockPos pos = block_pos(a, blockIdx.y);
  const int d = pos.d0 + ch;
  const bool active = d < a.d_inner;
  const ElementPair ep = element_pair(a, pos.d0);

  float A2[kS], h[kS] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < kS; ++i)
    A2[i] = active ? a.A[static_cast<int64_t>(d) * kN + g * kS + i] * kLog2e : 0.f;
  if (!kLocal && active) {
#pragma unroll 4  // the segments' loads, independent of h, then go out four at a time
    for (int r = 0; r < pos.seg; ++r) {
      const int64_t p = seg_index(a, pos.b, r, d);
      const float sum = a.seg_sum[p];
      float s0[kS];
      unpack(s0, reinterpret_cast<const float4*>(a.seg_state)[p * (kN / kS) + g]);
#pragma unroll
      for (int i = 0; i < kS; ++i) h[i] = fmaf(exp2f(A2[i] * sum), h[i], s0[i]);
    }
  }

  for (int i = 0; i < kFwdStages - 1; ++i) {
    const int c = pos.c_begin + i;
    if (c < pos.c_end)
      load_chunk<kThreads, kReads>(sm.tiles[i], a, pos, c);
    else
      __pipeline_commit();
  }
  float dt_sum = 0.f;
  for (int c = pos.c_begin; c < pos.c_end; ++c) {
    const int i = c - pos.c_begin;
    const auto& tile = sm.tiles[i % kFwdStages];
    __pipeline_wait_prior(kFwdStages - 2);
    __syncthreads();  // chunk c has landed; everyone is done with chunk c - 1's buffers
    const int next = c + kFwdStages - 1;
    if (next < pos.c_end)
      load_chunk<kThreads, kReads>(sm.tiles[(i + kFwdStages - 1) % kFwdStages], a, pos, next);
    else
      __pipeline_commit();
    const int steps = steps_in_chunk(a, c);
#pragma unroll
    for (int k = 0; k < kL / kPairRows; ++k) {
      // Stale tile slots (past the sequence or d_inner) are read and their results discarded.
      const int s = pair_step(k);
      float u[2], x[2], z[2], dt[2];
      load_vec<2>(&tile.x[0][s][ep.c], u);
      load_vec<2>(&tile.x[1][s][ep.c], x);
      if constexpr (!kLocal) load_vec<2>(&tile.x[2][s][ep.c], z);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const bool valid = ep.on[i] && s < steps;
        u[i] = valid ? u[i] : 0.f;
        dt[i] = valid ? softplus(x[i] + ep.bias[i]).value : 0.f;
        if constexpr (!kLocal) z[i] = valid ? z[i] * sigmoid(z[i]) : 0.f;  // the gate
      }
      if constexpr (!kLocal) {
        sm.gate[s][ep.p] = make_float2(z[0], z[1]);
        sm.dug[s][ep.p] = make_float2(ep.D[0] * u[0] * z[0], ep.D[1] * u[1] * z[1]);
      }
      *reinterpret_cast<float4*>(&sm.dt[s][ep.c]) =
          make_float4(dt[0], dt[0] * u[0], dt[1], dt[1] * u[1]);
    }
    convert_bc<kThreads, kReads>(sm.bc, tile, steps);
    __syncthreads();

    if (!kLocal && a.ckpt && active) store_checkpoint(checkpoint(a, pos.b, c, d, g), h);
#pragma unroll
    for (int s = 0; s < kL; ++s) {
      const float2 t = sm.dt[s][ch];
      float Bv[kS], Cv[kS];
      unpack(Bv, sm.bc[s][0][g]);
      if constexpr (!kLocal) unpack(Cv, sm.bc[s][1][g]);
      float y = 0.f;
#pragma unroll
      for (int j = 0; j < kS; ++j) {
        h[j] = fmaf(exp2f(t.x * A2[j]), h[j], t.y * Bv[j]);
        if constexpr (!kLocal) y = fmaf(Cv[j], h[j], y);
      }
      if constexpr (kLocal)
        dt_sum += t.x;
      else
        reinterpret_cast<float*>(&sm.y[s][cs])[g] = y;
    }
    if constexpr (!kLocal) {
      __syncthreads();
      const int64_t row = chunk_row(pos, c);
#pragma unroll
      for (int k = 0; k < kL / kPairRows; ++k) {
        const int s = pair_step(k);
        if (s < steps) {
          const float2 gate = sm.gate[s][ep.p], dug = sm.dug[s][ep.p];
          const float4 y0 = sm.y[s][ep.slot[0]], y1 = sm.y[s][ep.slot[1]];
          const float out[2] = {fmaf((y0.x + y0.y) + (y0.z + y0.w), gate.x, dug.x),
                                fmaf((y1.x + y1.y) + (y1.z + y1.w), gate.y, dug.y)};
          store_pair(a.out + (row + s) * a.d_inner + ep.d, out, ep, a.vec);
        }
      }
    }
  }

  if (!active) return;
  const int64_t p = seg_index(a, pos.b, pos.seg, d);
  if (kLocal) {
    if (g == 0) a.seg_sum[p] = dt_sum;
    reinterpret_cast<float4*>(a.seg_state)[p * (kN / kS) + g] = make_float4(h[0], h[1], h[2], h[3]);
  } else if (pos.seg == a.segments - 1 && a.last_state) {
#pragma unroll
    for (int i = 0; i < kS; ++i)
      a.last_state[(static_cast<int64_t>(pos.b) * a.d_inner + d) * kN + g * kS + i] = h[i];
  }
}

// A thread's share of the backward's adjoint recurrence: K states of one channel, register i
// holding state state(i) (each kernel has its own register order, see there).
template <int K>
struct Adjoint {
  float A2[K];      // A * log2 e
  float w[K];       // exp(dt A) * dL/dh, flowing back from later steps
  float dA_acc[K];  // this thread's dA, summed over the steps so far

  // Starts channel d's adjoint at the segment's end: zero, or (kLocal false) composed from the
  // later segments' local results.
  template <bool kLocal, typename T, typename State>
  __device__ __forceinline__ void start(const Args<T>& a, const BlockPos& pos, int d, bool active,
                                        State state) {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      A2[i] = active ? a.A[static_cast<int64_t>(d) * kN + state(i)] * kLog2e : 0.f;
      w[i] = 0.f;
      dA_acc[i] = 0.f;
    }
    if (!kLocal && active) {
#pragma unroll 4  // the segments' loads, independent of w, then go out four at a time
      for (int r = a.segments - 1; r > pos.seg; --r) {
        const int64_t p = seg_index(a, pos.b, r, d);
        const float sum = a.seg_sum[p];
#pragma unroll
        for (int i = 0; i < K; ++i)
          w[i] = fmaf(exp2f(A2[i] * sum), w[i], a.seg_state[p * kN + state(i)]);
      }
    }
  }

  // The local pass through one step (no states needed): w = exp(dt A) (C dy + w).
  __device__ __forceinline__ void local_step(const float (&Cv)[K], float dt, float dy) {
#pragma unroll
    for (int i = 0; i < K; ++i) w[i] = exp2f(dt * A2[i]) * fmaf(Cv[i], dy, w[i]);
  }

  // The state after a step from the one before it, keeping the step's decay exp(dt A).
  __device__ __forceinline__ void advance(float (&decay)[K], float (&h_next)[K],
                                          const float (&h)[K], const float (&Bv)[K], float dt,
                                          float dtu) const {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      decay[i] = exp2f(dt * A2[i]);
      h_next[i] = fmaf(decay[i], h[i], dtu * Bv[i]);
    }
  }

  // The adjoint through step j of a group, h_prev being the state before it; decays[j] holds the
  // step's decay for j < kGroup - 1 (the last one is computed here). Adds sum_n dL/dh B to sB and
  // sum_n A dL/dh exp(dt A) h[t-1] (in log2 units) to sA, and leaves dL/dh dt u in v.
  __device__ __forceinline__ void step(float (&v)[K], float& sB, float& sA, const float (&Bv)[K],
                                       const float (&Cv)[K], const float (&h_prev)[K],
                                       const float (&decays)[kGroup - 1][K], int j, float dt,
                                       float dy, float dtu) {
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const float decay = j + 1 < kGroup ? decays[j][i] : exp2f(dt * A2[i]);
      const float dh = fmaf(Cv[i], dy, w[i]);  // dL/dh[t, n]
      sB = fmaf(dh, Bv[i], sB);
      v[i] = dh * dtu;
      w[i] = decay * dh;
      const float q = w[i] * h_prev[i];  // dL/dh * exp(dt A) * h[t-1]
      sA = fmaf(A2[i], q, sA);
      dA_acc[i] = fmaf(dt, q, dA_acc[i]);
    }
  }

  // Stores what the pass leaves at per-segment index p: kLocal: the adjoint carried out of the
  // segment's start and (when with_sum) its dt sum; else the dA partial sums.
  template <bool kLocal, typename T, typename State>
  __device__ __forceinline__ void store(const Args<T>& a, int64_t p, float dt_sum, bool with_sum,
                                        State state) const {
    if constexpr (kLocal) {
      if (with_sum) a.seg_sum[p] = dt_sum;
#pragma unroll
      for (int i = 0; i < K; ++i) a.seg_state[p * kN + state(i)] = w[i];
    } else {
#pragma unroll
      for (int i = 0; i < K; ++i) a.part_dA[p * kN + state(i)] = dA_acc[i];
    }
  }
};

// kLocal: the segment pass, which uses only tile, e and bc, is given one element of the rest.
template <typename T, bool kLocal>
struct BwdSmem {
  static constexpr int kSteps = kLocal ? 1 : kL;
  // Raw inputs: the chunk's until dz is formed from its z and dout, then the next chunk's,
  // landing during the reverse pass.
  Tile<T, 4> tile;
  // Per (step, channel) values derived once per chunk: {dt, u, dy = dout silu(z),
  // sd = softplus'(delta + bias)}, one 16-byte load for the four threads of a channel. This and
  // part hold channel c at slot(c).
  float4 e[kL][kCh];
  // Each thread's share of the per-element sums over the channel's states, per (step, channel),
  // component g written by the thread of group g: in pass A its sum_n C h; in the reverse pass,
  // after one exchange between groups g and g ^ 1, even g hold sum_n dL/dh B of both and odd g
  // sum_n A dL/dh exp(dt A) h[t-1] of both. The per-element outputs add them up after each pass,
  // which costs far fewer instructions than summing over the four threads at every step.
  float4 part[kSteps][kCh];
  // B and C as fp32 by step and state group, in each of the four register orders.
  float4 bc[kL][2][kN / kS][4];
  float4 hg[kLocal ? 1 : kL / kGroup][kThreads];  // each thread's states before each group of steps
  float red[kSteps][kWarps][kN];                  // per-warp sums of dC, then of dB
};

// Adds the warps' partial sums of each (step, state) in a fixed order and stores the block's
// partial sums for the chunk's steps: part[s * kN + n].
__device__ void store_partials(float* part, const float (&red)[kL][kWarps][kN], int steps) {
  static_assert(kThreads == kL * kN && kWarps == 8, "one (step, state) per thread");
  const int s = threadIdx.x / kN, n = threadIdx.x % kN;
  if (s < steps) {
    const float(&r)[kWarps][kN] = red[s];
    part[threadIdx.x] =
        ((r[0][n] + r[1][n]) + (r[2][n] + r[3][n])) + ((r[4][n] + r[5][n]) + (r[6][n] + r[7][n]));
  }
}

// 4-state backward. kLocal: run only the adjoint recurrence through each segment but the first from
// a zero adjoint and store what it carries out of the segment's start (plus the segment's dt sum).
// Otherwise: the full backward of a segment, entered with the adjoint composed from the later
// segments' local results; per-element gradients are written, parameter and dB/dC gradients go to
// partial sums.
template <typename T, bool kLocal>
__global__ void __launch_bounds__(kThreads, kLocal ? kBwdLocalBlocksPerSM : kBwdBlocksPerSM)
    scan_bwd_kernel(const Args<T> a) {
  extern __shared__ float4 smem_raw[];
  BwdSmem<T, kLocal>& sm = *reinterpret_cast<BwdSmem<T, kLocal>*>(smem_raw);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int g = group(), ch = channel(), cs = slot(ch), pm = perm();
  const BlockPos pos = block_pos(a, kLocal ? blockIdx.y + 1 : blockIdx.y);
  const int d = pos.d0 + ch;
  const bool active = d < a.d_inner;
  const ElementPair ep = element_pair(a, pos.d0);
  auto state = [&](int i) { return g * kS + (i ^ pm); };
  constexpr unsigned kReads = kBwdReads<kLocal>;

  Adjoint<kS> adj;
  adj.start<kLocal>(a, pos, d, active, state);
  float e_dD[2] = {0.f, 0.f}, e_dbias[2] = {0.f, 0.f};  // the pair's share of dD, d(delta_bias)
  float dt_sum = 0.f;
  float *part_dB = dbc_partials(a, pos, 0), *part_dC = dbc_partials(a, pos, 1);

  load_chunk<kThreads, kReads>(sm.tile, a, pos, pos.c_end - 1);
  for (int c = pos.c_end - 1; c >= pos.c_begin; --c) {
    const int steps = steps_in_chunk(a, c);
    const int64_t row = chunk_row(pos, c);
    float h[kS];
    if (!kLocal)  // the checkpoint, fetched before the wait to hide its latency
      permute(
          h,
          active ? load_checkpoint(checkpoint(a, pos.b, c, d, g)) : make_float4(0.f, 0.f, 0.f, 0.f),
          pm);
    __pipeline_wait_prior(0);
    __syncthreads();  // chunk c has landed; everyone is done with chunk c + 1
#pragma unroll
    for (int k = 0; k < kL / kPairRows; ++k) {  // per-element values (stale slots discarded)
      const int s = pair_step(k);
      float u[2] = {0.f, 0.f}, x[2], z[2], go[2];
      if constexpr (!kLocal) load_vec<2>(&sm.tile.x[0][s][ep.c], u);
      load_vec<2>(&sm.tile.x[1][s][ep.c], x);
      load_vec<2>(&sm.tile.x[2][s][ep.c], z);
      load_vec<2>(&sm.tile.x[3][s][ep.c], go);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const bool valid = ep.on[i] && s < steps;
        const Softplus sp = softplus(x[i] + ep.bias[i]);
        sm.e[s][ep.slot[i]] =  // the segment pass reads dt and dy only
            make_float4(valid ? sp.value : 0.f, valid ? u[i] : 0.f,
                        valid ? go[i] * z[i] * sigmoid(z[i]) : 0.f, kLocal ? 0.f : sp.grad);
      }
    }
    // B and C (or C alone) in the four register orders, zero past the end of the sequence (stale
    // slots could hold NaNs): entry (s, q, grp, p) holds states kS * grp + (i ^ p), i < kS.
    using Bc = BcSpan<kReads>;
    constexpr int kQs = Bc::count / kN;
    for_my_indices<kThreads, kL * kQs*(kN / kS) * 4>([&](int j) {
      const int p = j & 3, grp = j >> 2 & 3, q = Bc::first / kN + (j >> 4) % kQs,
                s = (j >> 4) / kQs;
      float v[kS];
#pragma unroll
      for (int i = 0; i < kS; ++i)
        v[i] = s < steps ? to_f32(sm.tile.bc[s][q * kN + grp * kS + (i ^ p)]) : 0.f;
      sm.bc[s][q][grp][p] = make_float4(v[0], v[1], v[2], v[3]);
    });
    __syncthreads();

    if constexpr (kLocal) {
      if (c > pos.c_begin) load_chunk<kThreads, kReads>(sm.tile, a, pos, c - 1);
#pragma unroll
      for (int s = kL - 1; s >= 0; --s) {
        const float4 e = sm.e[s][cs];
        const float dt = e.x, dy = e.z;
        float Cv[kS];
        unpack(Cv, sm.bc[s][1][g][pm]);
        dt_sum += dt;
        adj.local_step(Cv, dt, dy);
      }
    } else {
      // Pass A: the states forward through the chunk; C h and the dC partial sums on the way.
#pragma unroll
      for (int s = 0; s < kL; ++s) {
        if (s % kGroup == 0) sm.hg[s / kGroup][tid] = make_float4(h[0], h[1], h[2], h[3]);
        const float4 e = sm.e[s][cs];
        const float dt = e.x, dy = e.z, dtu = dt * e.y;
        float Bv[kS], Cv[kS], v[kS], y = 0.f;
        unpack(Bv, sm.bc[s][0][g][pm]);
        unpack(Cv, sm.bc[s][1][g][pm]);
#pragma unroll
        for (int i = 0; i < kS; ++i) {
          h[i] = fmaf(exp2f(dt * adj.A2[i]), h[i], dtu * Bv[i]);
          y = fmaf(Cv[i], h[i], y);
          v[i] = dy * h[i];
        }
        const float r = channel_sum(v);
        if (!(lane & 1)) sm.red[s][warp][g * kS + pm] = r;
        reinterpret_cast<float*>(&sm.part[s][cs])[g] = y;
      }
      __syncthreads();
      store_partials(part_dC + row * kN, sm.red, steps);
#pragma unroll
      for (int k = 0; k < kL / kPairRows; ++k) {  // dz = dout silu'(z) (C h + D u)
        const int s = pair_step(k);
        if (s < steps) {
          float z[2], go[2], dz[2], out[2];
          load_vec<2>(&sm.tile.x[2][s][ep.c], z);
          load_vec<2>(&sm.tile.x[3][s][ep.c], go);
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const float4 t = sm.part[s][ep.slot[i]];
            const float y = fmaf(ep.D[i], sm.e[s][ep.slot[i]].y, (t.x + t.y) + (t.z + t.w));
            const float sz = sigmoid(z[i]);
            dz[i] = go[i] * sz * fmaf(z[i], 1.f - sz, 1.f) * y;
            out[i] = z[i] * sz * y;
          }
          store_pair(a.dz + (row + s) * a.ld_z + ep.d, dz, ep, a.vec);
          if (a.out) store_pair(a.out + (row + s) * a.d_inner + ep.d, out, ep, a.vec);
        }
      }
      __syncthreads();  // the tile is read for the last time
      if (c > pos.c_begin) load_chunk<kThreads, kReads>(sm.tile, a, pos, c - 1);

      // Reverse pass, kGroup steps at a time.
      for (int grp = kL / kGroup - 1; grp >= 0; --grp) {
        // h before each step of the group and exp(dt A) of its steps but the last, which is only
        // needed in the reverse step and computed there.
        float hs[kGroup][kS], dA[kGroup - 1][kS];
        unpack(hs[0], sm.hg[grp][tid]);
#pragma unroll
        for (int j = 0; j + 1 < kGroup; ++j) {
          const int s = grp * kGroup + j;
          const float4 e = sm.e[s][cs];
          const float dt = e.x, dtu = dt * e.y;
          float Bv[kS];
          unpack(Bv, sm.bc[s][0][g][pm]);
          adj.advance(dA[j], hs[j + 1], hs[j], Bv, dt, dtu);
        }
#pragma unroll
        for (int j = kGroup - 1; j >= 0; --j) {
          const int s = grp * kGroup + j;
          const float4 e = sm.e[s][cs];
          const float dt = e.x, dy = e.z, dtu = dt * e.y;
          float Bv[kS], Cv[kS], v[kS], sB = 0.f, sA = 0.f;
          unpack(Bv, sm.bc[s][0][g][pm]);
          unpack(Cv, sm.bc[s][1][g][pm]);
          adj.step(v, sB, sA, Bv, Cv, hs[j], dA, j, dt, dy, dtu);
          const float r = channel_sum(v);
          if (!(lane & 1)) sm.red[s][warp][g * kS + pm] = r;
          // Groups g and g ^ 1 swap halves: even g keep the sum of sB, odd g that of sA.
          const bool odd = g & 1;
          const float keep = odd ? sA : sB;
          reinterpret_cast<float*>(&sm.part[s][cs])[g] =
              keep + __shfl_xor_sync(~0u, odd ? sB : sA, 8);
        }
      }
      __syncthreads();
      store_partials(part_dB + row * kN, sm.red, steps);
#pragma unroll
      for (int k = 0; k < kL / kPairRows; ++k) {  // du, ddelta
        const int s = pair_step(k);
        if (s < steps) {
          float du[2], dx[2];
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const float4 t = sm.part[s][ep.slot[i]];
            const float sB = t.x + t.z, sA = t.y + t.w;
            const float4 e = sm.e[s][ep.slot[i]];  // dt, u, dy, sd (zero where not valid)
            dx[i] = fmaf(e.y, sB, kLn2 * sA) * e.w;
            du[i] = fmaf(ep.D[i], e.z, e.x * sB);
            e_dD[i] = fmaf(e.z, e.y, e_dD[i]);
            e_dbias[i] += ep.on[i] ? dx[i] : 0.f;
          }
          store_pair(a.du + (row + s) * a.d_inner + ep.d, du, ep, a.vec);
          store_pair(a.ddelta + (row + s) * a.d_inner + ep.d, dx, ep, a.vec);
        }
      }
    }
  }

  const int64_t p0 = seg_index(a, pos.b, pos.seg, pos.d0);
  if constexpr (!kLocal) {  // dD, d(delta_bias): the eight threads that took each channel's pair
    static_assert(kThreads == 8 * (kCh / 2) && 4 * kThreads <= kL * kWarps * kN);
    __syncthreads();
    float* part = &sm.red[0][0][0];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      part[i * kThreads + tid] = e_dD[i];
      part[(2 + i) * kThreads + tid] = e_dbias[i];
    }
    __syncthreads();
    if (tid < kCh && pos.d0 + tid < a.d_inner) {
      constexpr int kStride = kCh / 2;  // between the threads of one pair
      auto sum8 = [&](const float* x) {
        return ((x[0] + x[kStride]) + (x[2 * kStride] + x[3 * kStride])) +
               ((x[4 * kStride] + x[5 * kStride]) + (x[6 * kStride] + x[7 * kStride]));
      };
      const int at = tid % 2 * kThreads + tid / 2;
      a.part_dD[p0 + tid] = sum8(part + at);
      a.part_dbias[p0 + tid] = sum8(part + 2 * kThreads + at);
    }
  }
  if (active) adj.store<kLocal>(a, p0 + ch, dt_sum, g == 0, state);
}

// The 16-state backward: one thread per channel, all its states in registers, the rest as in the
// 4-state one (per-element work for the thread's own channel, outputs stored by it).
//
// Each thread keeps its 16 states in a lane-dependent order: register i holds state i ^ perm,
// perm = 8 (lane bit 4) + 4 (lane bit 3), i.e. its float4 group k holds the states' group
// k ^ grp with grp = perm / 4. warp_sum16 then always sends the upper half of its values to a
// partner that holds the same states there (see there). Loads and stores of per-state data
// (A, B, C, checkpoints) just permute float4 groups; everything in memory is in natural order.
__device__ __forceinline__ int state_group(int k) {
  return k ^ (threadIdx.x >> 3 & 3);
}
__device__ __forceinline__ int state_of(int i) {
  return i ^ (threadIdx.x >> 1 & 12);
}

// This thread's B (q = 0) or C (q = 1) of step s, in its register order.
__device__ __forceinline__ void load_bc(float (&v)[kN], const float4 (&bc)[kL][2][kN / 4], int s,
                                        int q) {
#pragma unroll
  for (int k = 0; k < kN / 4; ++k) {
    const float4 x = bc[s][q][state_group(k)];
    v[4 * k] = x.x, v[4 * k + 1] = x.y, v[4 * k + 2] = x.z, v[4 * k + 3] = x.w;
  }
}

// Sums v over the warp's 32 channels, per state. Each exchange halves the values a lane holds;
// thanks to the register order the partner lane of the first two exchanges (xor 16, xor 8) holds
// this lane's lower states in its upper registers, so only the last two need selects. Lane l ends
// with state l / 2 summed over the 16 lanes of its parity; the order of the sums is fixed.
__device__ __forceinline__ float warp_sum16(const float (&v)[kN]) {
  float a[8], b[4], c[2];
#pragma unroll
  for (int i = 0; i < 8; ++i) a[i] = v[i] + __shfl_xor_sync(~0u, v[i + 8], 16);
#pragma unroll
  for (int i = 0; i < 4; ++i) b[i] = a[i] + __shfl_xor_sync(~0u, a[i + 4], 8);
  bool hi = threadIdx.x & 4;
#pragma unroll
  for (int i = 0; i < 2; ++i)
    c[i] = (hi ? b[i + 2] : b[i]) + __shfl_xor_sync(~0u, hi ? b[i] : b[i + 2], 4);
  hi = threadIdx.x & 2;
  return (hi ? c[1] : c[0]) + __shfl_xor_sync(~0u, hi ? c[0] : c[1], 2);
}

// Adds the four lane partials of each (step, state) in a fixed order and stores the block's
// partial sums for the chunk's steps: part[s * kN + n]. State n is at lanes 2n, 2n + 1 of each
// warp.
__device__ void store_partials16(float* part, const float (&red)[kL][kCh], int steps) {
  for (int i = threadIdx.x; i < kL * kN; i += kThreads16) {
    const int s = i / kN, n = i % kN;
    if (s < steps)
      part[i] = (red[s][2 * n] + red[s][2 * n + 1]) + (red[s][32 + 2 * n] + red[s][33 + 2 * n]);
  }
}

template <typename T>
struct Bwd16Smem {
  Tile<T, 4> tile;  // raw inputs of the next chunk, landing while this one is computed
  // Per (step, channel) values derived once per chunk: dt, u, dy = dout silu(z),
  // gz = dout silu'(z), sd = softplus'(delta + bias).
  float dt[kL][kCh], u[kL][kCh], dy[kL][kCh], gz[kL][kCh], sd[kL][kCh];
  float silu[kL][kCh];  // silu(z), to re-form the forward's output when it is wanted
  float4 bc[kL][2][kN / 4];
  float4 hg[kL / kGroup][kN / 4][kCh];  // the state before each group of kGroup steps
  float red[kL][kCh];                   // per-lane warp sums of dC, then of dB
};

// 16-state backward. kLocal: run only the adjoint recurrence through each segment but the first
// from a zero adjoint and store what it carries out of the segment's start (plus the segment's dt
// sum). Otherwise: the full backward of a segment, entered with the adjoint composed from the later
// segments' local results; per-element gradients are written, parameter and dB/dC gradients go to
// partial sums.
template <typename T, bool kLocal>
__global__ void __launch_bounds__(kThreads16, kBwd16BlocksPerSM)
    scan_bwd16_kernel(const Args<T> a) {
  extern __shared__ float4 smem_raw[];
  Bwd16Smem<T>& sm = *reinterpret_cast<Bwd16Smem<T>*>(smem_raw);
  const int tid = threadIdx.x;
  const BlockPos pos = block_pos(a, kLocal ? blockIdx.y + 1 : blockIdx.y);
  const int d = pos.d0 + tid;
  const bool active = d < a.d_inner;

  auto state = [](int i) { return state_of(i); };
  constexpr unsigned kReads = kBwdReads<kLocal>;

  Adjoint<kN> adj;
  adj.start<kLocal>(a, pos, d, active, state);
  const float Dd = active ? a.D[d] : 0.f, bias = active ? a.delta_bias[d] : 0.f;
  float dD_acc = 0.f, dbias_acc = 0.f, dt_sum = 0.f;
  float *part_dB = dbc_partials(a, pos, 0), *part_dC = dbc_partials(a, pos, 1);

  load_chunk<kThreads16, kReads>(sm.tile, a, pos, pos.c_end - 1);
  for (int c = pos.c_end - 1; c >= pos.c_begin; --c) {
    const int steps = steps_in_chunk(a, c);
    const int64_t row = chunk_row(pos, c);
    float h[kN];
    if (!kLocal) {  // the checkpoint, fetched before the wait to hide its latency
#pragma unroll
      for (int k = 0; k < kN / 4; ++k) {
        const float4 v = active ? load_checkpoint(checkpoint(a, pos.b, c, d, state_group(k)))
                                : make_float4(0.f, 0.f, 0.f, 0.f);
        h[4 * k] = v.x, h[4 * k + 1] = v.y, h[4 * k + 2] = v.z, h[4 * k + 3] = v.w;
      }
    }
    __pipeline_wait_prior(0);
    __syncthreads();  // chunk c has landed; everyone is done with chunk c + 1
#pragma unroll 4
    for (int s = 0; s < kL; ++s) {  // this channel's per-step values
      const bool valid = active && s < steps;
      const float z = to_f32(sm.tile.x[2][s][tid]);
      const float g = to_f32(sm.tile.x[3][s][tid]);
      const float sz = sigmoid(z);
      const Softplus sp = softplus(to_f32(sm.tile.x[1][s][tid]) + bias);
      sm.dt[s][tid] = valid ? sp.value : 0.f;
      sm.dy[s][tid] = valid ? g * z * sz : 0.f;
      if constexpr (!kLocal) {  // the local pass needs only dt and dy
        sm.u[s][tid] = valid ? to_f32(sm.tile.x[0][s][tid]) : 0.f;
        sm.gz[s][tid] = valid ? g * sz * fmaf(z, 1.f - sz, 1.f) : 0.f;
        sm.sd[s][tid] = sp.grad;
        sm.silu[s][tid] = z * sz;
      }
    }
    convert_bc<kThreads16, kReads>(sm.bc, sm.tile, steps);
    __syncthreads();
    if (c > pos.c_begin) load_chunk<kThreads16, kReads>(sm.tile, a, pos, c - 1);

    if constexpr (kLocal) {
#pragma unroll
      for (int s = kL - 1; s >= 0; --s) {
        const float dt = sm.dt[s][tid], dy = sm.dy[s][tid];
        float Cv[kN];
        load_bc(Cv, sm.bc, s, 1);
        dt_sum += dt;
        adj.local_step(Cv, dt, dy);
      }
    } else {
      const int64_t at = row * a.d_inner + d, at_z = row * a.ld_z + d;  // step 0 of the chunk
      // Pass A: the states forward through the chunk; dz and the dC partial sums on the way.
#pragma unroll
      for (int s = 0; s < kL; ++s) {
        if (s % kGroup == 0) {
#pragma unroll
          for (int k = 0; k < kN / 4; ++k)
            sm.hg[s / kGroup][k][tid] =
                make_float4(h[4 * k], h[4 * k + 1], h[4 * k + 2], h[4 * k + 3]);
        }
        const float dt = sm.dt[s][tid], u = sm.u[s][tid], dy = sm.dy[s][tid];
        const float dtu = dt * u;
        float Bv[kN], Cv[kN], v[kN], y[4] = {0.f, 0.f, 0.f, 0.f};
        load_bc(Bv, sm.bc, s, 0);
        load_bc(Cv, sm.bc, s, 1);
#pragma unroll
        for (int i = 0; i < kN; ++i) {
          h[i] = fmaf(exp2f(dt * adj.A2[i]), h[i], dtu * Bv[i]);
          y[i & 3] = fmaf(Cv[i], h[i], y[i & 3]);
          v[i] = dy * h[i];
        }
        sm.red[s][tid] = warp_sum16(v);
        if (active && s < steps) {
          const float out = (y[0] + y[1]) + (y[2] + y[3]) + Dd * u;
          store(a.dz + at_z + s * a.ld_z, sm.gz[s][tid] * out);
          if (a.out) store(a.out + at + s * a.d_inner, sm.silu[s][tid] * out);
        }
      }
      __syncthreads();
      store_partials16(part_dC + row * kN, sm.red, steps);
      __syncthreads();

      // Reverse pass, kGroup steps at a time.
      for (int grp = kL / kGroup - 1; grp >= 0; --grp) {
        // h before each step of the group and exp(dt A) of its steps but the last, which is only
        // needed in the reverse step and computed there.
        float hs[kGroup][kN], dA[kGroup - 1][kN];
#pragma unroll
        for (int k = 0; k < kN / 4; ++k) {
          const float4 v = sm.hg[grp][k][tid];
          hs[0][4 * k] = v.x, hs[0][4 * k + 1] = v.y, hs[0][4 * k + 2] = v.z;
          hs[0][4 * k + 3] = v.w;
        }
#pragma unroll
        for (int j = 0; j + 1 < kGroup; ++j) {
          const int s = grp * kGroup + j;
          const float dt = sm.dt[s][tid], dtu = dt * sm.u[s][tid];
          float Bv[kN];
          load_bc(Bv, sm.bc, s, 0);
          adj.advance(dA[j], hs[j + 1], hs[j], Bv, dt, dtu);
        }
#pragma unroll
        for (int j = kGroup - 1; j >= 0; --j) {
          const int s = grp * kGroup + j;
          const float dt = sm.dt[s][tid], u = sm.u[s][tid], dy = sm.dy[s][tid];
          const float dtu = dt * u;
          float Bv[kN], Cv[kN], v[kN], sB = 0.f, sA = 0.f;
          load_bc(Bv, sm.bc, s, 0);
          load_bc(Cv, sm.bc, s, 1);
          adj.step(v, sB, sA, Bv, Cv, hs[j], dA, j, dt, dy, dtu);
          sm.red[s][tid] = warp_sum16(v);
          if (active && s < steps) {
            const float dx = fmaf(u, sB, kLn2 * sA) * sm.sd[s][tid];
            store(a.du + at + s * a.d_inner, fmaf(Dd, dy, dt * sB));
            store(a.ddelta + at + s * a.d_inner, dx);
            dD_acc = fmaf(dy, u, dD_acc);
            dbias_acc += dx;
          }
        }
      }
      __syncthreads();
      store_partials16(part_dB + row * kN, sm.red, steps);
    }
  }

  if (!active) return;
  const int64_t p = seg_index(a, pos.b, pos.seg, d);
  adj.store<kLocal>(a, p, dt_sum, true, state);
  if constexpr (!kLocal) {
    a.part_dD[p] = dD_acc;
    a.part_dbias[p] = dbias_acc;
  }
}

// dB, dC[t, n] = sum over channel blocks of the partials, in block order.
template <typename T>
__global__ void reduce_dbc_kernel(T* dB, T* dC, const float* part, int dblocks, int64_t tokens,
                                  int64_t ld_bc) {
  const int64_t count = tokens * kN;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < 2 * count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const bool is_c = i >= count;
    const int64_t r = is_c ? i - count : i;
    const float* p = part + (is_c ? dblocks * count : 0) + r;
    float sum = 0.f;
    for (int k = 0; k < dblocks; ++k) sum += p[k * count];
    store((is_c ? dC : dB) + r / kN * ld_bc + r % kN, sum);
  }
}

// dA, dD, d(delta_bias) += the per-(batch, segment) partials, in order.
__global__ void reduce_params_kernel(float* dA, float* dD, float* dbias, const float* pA,
                                     const float* pD, const float* pbias, int parts, int d_inner) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < d_inner * kN) {
    float sum = 0.f;
    for (int p = 0; p < parts; ++p) sum += pA[static_cast<int64_t>(p) * d_inner * kN + i];
    dA[i] += sum;
  } else if (i < d_inner * (kN + 1)) {
    const int d = i - d_inner * kN;
    float sD = 0.f, sb = 0.f;
    for (int p = 0; p < parts; ++p) {
      sD += pD[static_cast<int64_t>(p) * d_inner + d];
      sb += pbias[static_cast<int64_t>(p) * d_inner + d];
    }
    dD[d] += sD;
    dbias[d] += sb;
  }
}

struct Plan {
  int nchunks, dblocks, segments, chunks_per_seg;
  int64_t tokens;
  bool bwd16;  // the backward with 16 states per thread (else 4)
};

void validate(const ScanShape& s, const ScanTuning& tuning) {
  if (tuning.backward_states != 0 && tuning.backward_states != 4 && tuning.backward_states != 16)
    throw_error("scan error: backward_states = ", tuning.backward_states,
                ": use 4 or 16 (states per thread of the backward), or 0 for the plan's choice");
  if (s.d_state != kN)
    throw_error("scan error: d_state = ", s.d_state, ": the CUDA scan supports d_state = 16 only");
  if (s.batch < 1 || s.seqlen < 1 || s.d_inner < 1)
    throw_error("scan error: batch = ", s.batch, ", seqlen = ", s.seqlen, ", d_inner = ", s.d_inner,
                ": each must be at least 1");
  if (s.ld_z < s.d_inner)
    throw_error("scan error: ld_z = ", s.ld_z, " is less than d_inner = ", s.d_inner);
  if (s.ld_bc < kN) throw_error("scan error: ld_bc = ", s.ld_bc, " is less than d_state = 16");
}

void require(const void* p, const char* name) {
  if (!p) throw_error("scan error: ", name, " is null");
}

Plan make_plan(const ScanShape& s, const ScanTuning& tuning) {
  Plan p;
  p.tokens = static_cast<int64_t>(s.batch) * s.seqlen;
  p.nchunks = static_cast<int>(ceil_div(s.seqlen, kL));
  p.dblocks = static_cast<int>(ceil_div(s.d_inner, kCh));
  int device = 0, sms = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
             "cudaDeviceGetAttribute(multiprocessor count)");
  const int64_t blocks = static_cast<int64_t>(s.batch) * p.dblocks;
  int64_t segments = tuning.segments;
  if (segments <= 0) {
    // Segments cost an extra pass of exps. From half a block per SM on, fill one wave of the
    // 4-state backward as far as whole segments go (bench_scan --sweep at d_inner 4096, seqlen
    // 2048, fwd + bwd ms: 256 blocks 1.46 unsegmented against 1.70 with 2 segments and 1.74 with
    // the two-wave rule's 4; 192 blocks 1.27 with 2 against 1.46; 128 blocks 0.86 with 3 against
    // 0.94). Fewer blocks have the long sequences, where the extra pass is cheapest spread over
    // as many blocks as two full waves of the 16-state backward (44 segments 5.25 ms at 1 x 65536
    // x 1536 against 5.37 with the one-wave rule's 16), which the 4-state backward then runs;
    // that count is doubled while segments would be longer than kMaxSegmentSteps, which keeps
    // whole waves (fwd + bwd ms: 1 x 65536 x 1536 5.059 in 44 segments, 5.024 in 88, but 5.118 in
    // 86; 1 x 16384 x 4096 3.448 in 16, 3.404 in 32; 2 x 16384 x 1536 keeps its 22: 2.553, 2.576
    // in 44).
    if (2 * blocks >= sms) {
      segments = std::max<int64_t>(1, kBwdBlocksPerSM * sms / blocks);
    } else {
      segments = 2 * kBwd16BlocksPerSM * sms / blocks;
      while (s.seqlen > segments * kMaxSegmentSteps) segments *= 2;
    }
  }
  segments = std::clamp<int64_t>(segments, 1, std::min(p.nchunks, 65535));
  p.chunks_per_seg = static_cast<int>(ceil_div(p.nchunks, segments));
  p.segments = static_cast<int>(ceil_div(p.nchunks, p.chunks_per_seg));
  // The 4-state backward hides latency with 4x the warps but spends more instructions and
  // shared-memory accesses per element. Where its blocks fill one wave (3 per SM), or two or more
  // so that the last one matters less, it is the faster one; between one and two waves the
  // 16-state one, which then has enough warps too (bench_scan, bwd ms with 4 / 16 states: 512
  // blocks at 8 x 2048 x 4096 2.19 / 1.96; 1024 blocks at 1 x 16384 x 4096 in 16 segments
  // 2.45 / 2.53; 1056 at 1 x 65536 x 1536 in 44 segments 3.59 / 3.72).
  const int64_t wave = static_cast<int64_t>(kBwdBlocksPerSM) * sms,
                bwd_blocks = blocks * p.segments;
  p.bwd16 = tuning.backward_states ? tuning.backward_states == 16
                                   : bwd_blocks > wave && bwd_blocks < 2 * wave;
  return p;
}

// Carves the workspace; with base == nullptr it only counts the bytes.
struct Workspace {
  float *seg_state, *seg_sum, *part_dbc, *part_dA, *part_dD, *part_dbias;
  size_t bytes;
};

Workspace carve(const ScanShape& s, const Plan& p, void* base) {
  Workspace w{};
  auto take = [&](size_t count) {
    float* ptr = base ? reinterpret_cast<float*>(static_cast<char*>(base) + w.bytes) : nullptr;
    w.bytes += (count * sizeof(float) + 255) / 256 * 256;
    return ptr;
  };
  const size_t per_seg = static_cast<size_t>(s.batch) * p.segments * s.d_inner;
  w.seg_state = take(p.segments > 1 ? per_seg * kN : 0);
  w.seg_sum = take(p.segments > 1 ? per_seg : 0);
  w.part_dbc = take(2 * static_cast<size_t>(p.dblocks) * p.tokens * kN);
  w.part_dA = take(per_seg * kN);
  w.part_dD = take(per_seg);
  w.part_dbias = take(per_seg);
  return w;
}

template <typename T>
void set_plan(Args<T>& a, const ScanShape& s, const Plan& p, const Workspace& w) {
  a.seqlen = s.seqlen;
  a.ld_z = s.ld_z;
  a.ld_bc = s.ld_bc;
  a.tokens = p.tokens;
  a.d_inner = s.d_inner;
  a.nchunks = p.nchunks;
  a.dblocks = p.dblocks;
  a.segments = p.segments;
  a.chunks_per_seg = p.chunks_per_seg;
  a.seg_state = w.seg_state;
  a.seg_sum = w.seg_sum;
  a.part_dbc = w.part_dbc;
  a.part_dA = w.part_dA;
  a.part_dD = w.part_dD;
  a.part_dbias = w.part_dbias;
}

template <typename T>
bool rows_aligned(const ScanShape& s) {
  return (s.d_inner * sizeof(T)) % 16 == 0 && (s.ld_z * sizeof(T)) % 16 == 0 &&
         (s.ld_bc * sizeof(T)) % 16 == 0;
}

// Both scan kernels take more shared memory than the default 48 KB.
template <typename T>
void launch(void (*kernel)(Args<T>), dim3 grid, int threads, size_t smem, const Args<T>& a,
            cudaStream_t stream, const char* what) {
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem)),
             what);
  check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  cudaSharedmemCarveoutMaxShared),
             what);
  kernel<<<grid, threads, smem, stream>>>(a);
  check_launch(what);
}

// Points a at the scan's inputs, each checked for its type and for null.
template <typename T>
void set_inputs(Args<T>& a, const ScanInputs& in, const ActCast<T>& act) {
  a.u = act(in.u, "u"), a.delta = act(in.delta, "delta"), a.z = act(in.z, "z");
  a.B = act(in.B, "B"), a.C = act(in.C, "C");
  a.A = in.A, a.D = in.D, a.delta_bias = in.delta_bias;
  const std::pair<const void*, const char*> needed[] = {
      {a.u, "u"}, {a.delta, "delta"},           {a.A, "A"}, {a.B, "B"}, {a.C, "C"},
      {a.D, "D"}, {a.delta_bias, "delta_bias"}, {a.z, "z"}};
  for (const auto& [p, name] : needed) require(p, name);
}

template <typename T>
void forward(const ScanShape& s, const ScanInputs& in, Act out_act, float* last_state, void* ckpt,
             void* workspace, cudaStream_t stream, const ScanTuning& tuning) {
  validate(s, tuning);
  const ActCast<T> act{"selective_scan_forward"};
  Args<T> a{};
  set_inputs(a, in, act);
  a.out = act(out_act, "out"), a.last_state = last_state, a.ckpt = ckpt;
  require(a.out, "out");
  if (!aligned_to(ckpt, 16)) throw_error("scan error: checkpoints must be 16-byte aligned");
  const Plan p = make_plan(s, tuning);
  if (p.segments > 1) require(workspace, "workspace");
  set_plan(a, s, p, carve(s, p, workspace));
  a.vec = rows_aligned<T>(s) && all_aligned_to({a.out, a.u, a.delta, a.z, a.B, a.C}, 16);

  const unsigned blocks = static_cast<unsigned>(static_cast<int64_t>(s.batch) * p.dblocks);
  if (p.segments > 1)
    launch(scan_fwd_kernel<T, true>, dim3(blocks, p.segments - 1), kThreads,
           sizeof(FwdSmem<T, true>), a, stream, "scan forward (segment pass)");
  launch(scan_fwd_kernel<T, false>, dim3(blocks, p.segments), kThreads, sizeof(FwdSmem<T, false>),
         a, stream, "scan forward");
}

template <typename T>
void backward(const ScanShape& s, const ScanInputs& in, ConstAct dout, const void* ckpt,
              const ScanGrads& g, void* workspace, cudaStream_t stream, const ScanTuning& tuning) {
  validate(s, tuning);
  const ActCast<T> act{"selective_scan_backward"};
  Args<T> a{};
  set_inputs(a, in, act);
  a.dout = act(dout, "dout");
  a.du = act(g.du, "du"), a.ddelta = act(g.ddelta, "ddelta"), a.dz = act(g.dz, "dz");
  a.out = act(g.out, "out");
  a.ckpt = const_cast<void*>(ckpt);
  T* const dB = act(g.dB, "dB");
  T* const dC = act(g.dC, "dC");
  const std::pair<const void*, const char*> needed[] = {{a.dout, "dout"},
                                                        {a.du, "du"},
                                                        {a.ddelta, "ddelta"},
                                                        {a.dz, "dz"},
                                                        {dB, "dB"},
                                                        {dC, "dC"},
                                                        {g.dA, "dA"},
                                                        {g.dD, "dD"},
                                                        {g.ddelta_bias, "ddelta_bias"},
                                                        {ckpt, "checkpoints"},
                                                        {workspace, "workspace"}};
  for (const auto& [p, name] : needed) require(p, name);
  if (!aligned_to(ckpt, 16)) throw_error("scan error: checkpoints must be 16-byte aligned");
  const Plan p = make_plan(s, tuning);
  const Workspace w = carve(s, p, workspace);
  set_plan(a, s, p, w);
  a.vec = rows_aligned<T>(s) &&
          all_aligned_to({a.u, a.delta, a.z, a.dout, a.B, a.C, a.du, a.ddelta, a.dz, a.out}, 16);

  const unsigned blocks = static_cast<unsigned>(static_cast<int64_t>(s.batch) * p.dblocks);
  if (p.bwd16) {
    if (p.segments > 1)
      launch(scan_bwd16_kernel<T, true>, dim3(blocks, p.segments - 1), kThreads16,
             sizeof(Bwd16Smem<T>), a, stream, "scan backward (segment pass)");
    launch(scan_bwd16_kernel<T, false>, dim3(blocks, p.segments), kThreads16, sizeof(Bwd16Smem<T>),
           a, stream, "scan backward");
  } else {
    if (p.segments > 1)
      launch(scan_bwd_kernel<T, true>, dim3(blocks, p.segments - 1), kThreads,
             sizeof(BwdSmem<T, true>), a, stream, "scan backward (segment pass)");
    launch(scan_bwd_kernel<T, false>, dim3(blocks, p.segments), kThreads, sizeof(BwdSmem<T, false>),
           a, stream, "scan backward");
  }

  const int64_t outputs = 2 * p.tokens * kN;
  const unsigned rblocks = static_cast<unsigned>(std::min<int64_t>(ceil_div(outputs, 256), 65536));
  reduce_dbc_kernel<T>
      <<<rblocks, 256, 0, stream>>>(dB, dC, w.part_dbc, p.dblocks, p.tokens, s.ld_bc);
  check_launch("scan backward dB/dC reduction launch");
  const int parts = s.batch * p.segments;
  reduce_params_kernel<<<static_cast<unsigned>(ceil_div(s.d_inner * (kN + 1), 256)), 256, 0,
                         stream>>>(g.dA, g.dD, g.ddelta_bias, w.part_dA, w.part_dD, w.part_dbias,
                                   parts, s.d_inner);
  check_launch("scan backward parameter reduction launch");
}

}  // namespace

size_t scan_checkpoint_bytes(const ScanShape& s, ActType type) {
  validate(s, {});
  return static_cast<size_t>(s.batch) * ceil_div(s.seqlen, kL) * s.d_inner * kN * type_bytes(type);
}

size_t scan_workspace_bytes(const ScanShape& s, const ScanTuning& tuning) {
  validate(s, tuning);
  return carve(s, make_plan(s, tuning), nullptr).bytes;
}

void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out, float* last_state,
                            void* checkpoints, void* workspace, cudaStream_t stream,
                            const ScanTuning& tuning) {
  if (in.u.type == ActType::BF16)
    forward<__nv_bfloat16>(s, in, out, last_state, checkpoints, workspace, stream, tuning);
  else
    forward<float>(s, in, out, last_state, checkpoints, workspace, stream, tuning);
}

void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout,
                             const void* checkpoints, const ScanGrads& grads, void* workspace,
                             cudaStream_t stream, const ScanTuning& tuning) {
  if (in.u.type == ActType::BF16)
    backward<__nv_bfloat16>(s, in, dout, checkpoints, grads, workspace, stream, tuning);
  else
    backward<float>(s, in, dout, checkpoints, grads, workspace, stream, tuning);
}

}  // namespace mamba::cuda
