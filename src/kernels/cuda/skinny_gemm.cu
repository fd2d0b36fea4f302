// Skinny linear forward (T <= 16 rows); see skinny_gemm.h.
//
// Tensor cores, weight-stationary: one block owns 16 output features (the MMA's m = 16) and all
// T rows (n = 8, twice when T > 8). Its warps split in_dim between them in chunks of 128 and sum
// their partial tiles through shared memory at the end, so a block of many warps keeps many loads
// in flight when there are few features, and many blocks of one warp do when there are many (the
// LM head). When the features give fewer blocks than the device has SMs (x_proj: 160 features,
// 10 blocks), in_dim is split between the blocks of a thread-block cluster too, and the cluster's
// first block sums the others' partial tiles from their shared memory: more SMs read the weights.
//
// A dot product may visit k in any order, as long as both operands use the same one. So each
// lane loads 16 contiguous bytes (8 values of k) of its weight row and of its input row, and
// the MMA's fragments take them as they come: in m16n8k16, lane (g = lane / 4, t = lane % 4)
// holds A's rows g and g + 8 at logical k {2t, 2t+1} and {2t+8, 2t+9}, and B's column g at the
// same k. Giving both the same 8 loaded values (.x, .y for one MMA, .z, .w for the next) maps
// the 32 physical k of 4 lanes one to one onto the 2 x 16 logical k of two MMAs.
#include <cooperative_groups.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/skinny_gemm.h"

namespace mamba::cuda {

namespace {

constexpr int kTile = 16;        // output features per block
constexpr int kChunk = 128;      // k per warp per iteration: 4 loads of 8 per lane per row
constexpr int kMaxWarps = 16;    // per block; launch bounds leave 128 registers a thread
constexpr int kWarpsPerSm = 16;  // resident warps per SM the launch aims for
constexpr int kMaxSplit = 8;     // blocks per cluster: the portable maximum

__device__ __forceinline__ const uint4* as_u4(const bf16* p) {
  return reinterpret_cast<const uint4*>(p);
}
// Out-of-range loads read a valid address (the operand's start) and are zeroed here, rather than
// skipped: without branches, all loads of an iteration issue before the first is waited for.
__device__ __forceinline__ uint4 or_zero(bool ok, uint4 v) {
  return ok ? v : make_uint4(0, 0, 0, 0);
}

// NT: 8-row tiles of T (1 or 2). gridDim.y: the blocks of a cluster that split in_dim.
template <int NT, typename Out>
__global__ void __launch_bounds__(kMaxWarps * 32)
    skinny_linear_kernel(Out* out, int64_t ld_out, const bf16* inp, int64_t ld_inp,
                         const bf16* weight, int T, int in_dim, int out_dim) {
  extern __shared__ float partial[];  // [warps][NT * 4][32], when there are several warps
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int split = gridDim.y, first_chunk = blockIdx.y * warps + warp;
  const int g = lane / 4, t = lane % 4;
  const int64_t row = int64_t(blockIdx.x) * kTile + g;
  const bool has_lo = row < out_dim, has_hi = row + 8 < out_dim;
  const bf16* w_lo = weight + row * in_dim;
  const bf16* w_hi = w_lo + int64_t(8) * in_dim;
  const bf16* x[NT];
  bool has_x[NT];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    has_x[nt] = nt * 8 + g < T;
    x[nt] = inp + int64_t(nt * 8 + g) * ld_inp;
  }
  float acc[NT][4] = {};
  for (int k0 = first_chunk * kChunk; k0 < in_dim; k0 += split * warps * kChunk) {
    uint4 a_lo[4], a_hi[4], b[NT][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int k = k0 + 32 * j + 8 * t;  // in_dim is a multiple of 8: all 8 in, or none
      const bool in = k < in_dim;
      // The weights are read once per token: streamed past the caches.
      a_lo[j] = or_zero(in && has_lo, __ldcs(as_u4(in && has_lo ? w_lo + k : weight)));
      a_hi[j] = or_zero(in && has_hi, __ldcs(as_u4(in && has_hi ? w_hi + k : weight)));
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const bool ok = in && has_x[nt];
        b[nt][j] = or_zero(ok, __ldg(as_u4(ok ? x[nt] + k : inp)));
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        mma_16816(acc[nt], a_lo[j].x, a_hi[j].x, a_lo[j].y, a_hi[j].y, b[nt][j].x, b[nt][j].y);
        mma_16816(acc[nt], a_lo[j].z, a_hi[j].z, a_lo[j].w, a_hi[j].w, b[nt][j].z, b[nt][j].w);
      }
    }
  }

  // The accumulator: lane (g, t) holds D[g][2t + c] in acc[c] and D[g + 8][2t + c] in acc[2 + c]
  // (c = 0, 1), rows being features and columns the T rows of this 8-row tile.
  constexpr int kSlots = NT * 4;
  auto store = [&](int s, int l, float sum) {
    const int nt = s / 4, c = s % 4;
    const int64_t o = int64_t(blockIdx.x) * kTile + l / 4 + (c >= 2 ? 8 : 0);
    const int tok = nt * 8 + 2 * (l % 4) + (c & 1);
    if (o < out_dim && tok < T) out[tok * ld_out + o] = from_f32<Out>(sum);
  };
  if (warps == 1 && split == 1) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) store(s, lane, acc[s / 4][s % 4]);
    return;
  }
#pragma unroll
  for (int s = 0; s < kSlots; ++s) partial[(warp * kSlots + s) * 32 + lane] = acc[s / 4][s % 4];
  __syncthreads();
  // The block's sum goes to the first warp's slots: entry i is read and written by thread i only.
  for (int i = threadIdx.x; i < kSlots * 32; i += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < warps; ++w) sum += partial[w * kSlots * 32 + i];
    if (split == 1) {
      store(i / 32, i % 32, sum);
    } else {
      partial[i] = sum;
    }
  }
  if (split == 1) return;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  if (cluster.block_rank() == 0) {
    for (int i = threadIdx.x; i < kSlots * 32; i += blockDim.x) {
      float sum = 0.0f;
      for (int r = 0; r < split; ++r) sum += cluster.map_shared_rank(partial, r)[i];
      store(i / 32, i % 32, sum);
    }
  }
  // The others' shared memory must outlive the first block's reads.
  cluster.sync();
#else
  __trap();  // the host splits in_dim over a cluster on compute capability 9.0 or more only
#endif
}

}  // namespace

bool skinny_linear_fits(const void* inp, int64_t ld_inp, const void* weight, int64_t T, int in_dim,
                        int out_dim) {
  return T >= 1 && T <= kSkinnyMaxRows && in_dim > 0 && out_dim > 0 && in_dim % 8 == 0 &&
         ld_inp % 8 == 0 && all_aligned_to({inp, weight}, 16);
}

template <typename Out>
void skinny_linear_forward(Out* out, int64_t ld_out, const bf16* inp, int64_t ld_inp,
                           const bf16* weight, int64_t T, int in_dim, int out_dim, int sm_count,
                           bool clusters, cudaStream_t stream) {
  if (!skinny_linear_fits(inp, ld_inp, weight, T, in_dim, out_dim)) {
    throw_error("op error: skinny_linear_forward: T = ", T, ", in_dim = ", in_dim,
                ", ld_inp = ", ld_inp,
                " or the operands' alignment do not fit the kernel (skinny_linear_fits); use the "
                "general GEMM");
  }
  const int64_t tiles = (out_dim + kTile - 1) / kTile;
  const int64_t chunks = (in_dim + kChunk - 1) / kChunk;
  // in_dim is split over a cluster only where a block's warps would each have to wait for more
  // than one chunk after another and there are SMs to spare: below that the cluster's
  // synchronisation costs more than it saves.
  const int split = static_cast<int>(
      std::clamp<int64_t>(std::min<int64_t>((chunks + kMaxWarps - 1) / kMaxWarps, sm_count / tiles),
                          1, clusters ? kMaxSplit : 1));
  // Enough warps per block that the device holds about kWarpsPerSm per SM, without warps that
  // would find no chunk.
  const int64_t wanted = (int64_t(kWarpsPerSm) * sm_count + tiles * split - 1) / (tiles * split);
  const int warps = static_cast<int>(
      std::clamp<int64_t>(std::min(wanted, (chunks + split - 1) / split), 1, kMaxWarps));
  const int nt = T > 8 ? 2 : 1;
  const size_t smem = warps > 1 || split > 1 ? size_t(warps) * nt * 4 * 32 * sizeof(float) : 0;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(split));
  config.blockDim = dim3(static_cast<unsigned>(warps * 32));
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute cluster = {};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = 1;
  cluster.val.clusterDim.y = static_cast<unsigned>(split);
  cluster.val.clusterDim.z = 1;
  config.attrs = &cluster;
  config.numAttrs = split > 1 ? 1 : 0;
  const auto kernel = nt == 1 ? skinny_linear_kernel<1, Out> : skinny_linear_kernel<2, Out>;
  check_cuda(cudaLaunchKernelEx(&config, kernel, out, ld_out, inp, ld_inp, weight, int(T), in_dim,
                                out_dim),
             "skinny_linear_kernel");
}

template void skinny_linear_forward<float>(float*, int64_t, const bf16*, int64_t, const bf16*,
                                           int64_t, int, int, int, bool, cudaStream_t);
template void skinny_linear_forward<bf16>(bf16*, int64_t, const bf16*, int64_t, const bf16*,
                                          int64_t, int, int, int, bool, cudaStream_t);

}  // namespace mamba::cuda
