// AdamW, math in kernels/cpu/adamw.h. The scalar factors are computed on the host in double and
// rounded to fp32 exactly as the CPU twin does, so both apply the same fp32 constants.
#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kBlockElements = 4 * kThreads;  // elements of one segment per block

struct AdamWFactors {
  float decay, step_size, bc2_sqrt, beta1, beta2, eps, grad_scale;
};

// --use_fast_math would turn sqrt and division into approximations; the update is memory-bound,
// so the correctly rounded intrinsics cost nothing and keep the step equal to the CPU's. A
// segment outside the decay group multiplies by 1.0f, which is what the CPU's factor
// (float)(1.0 - lr * 0.0) is. The tensors never overlap (the copy is null where it would alias
// param): __restrict__ lets a thread issue the loads of all its elements before the first store.
template <typename T>
__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, T* __restrict__ copy,
                             const AdamWBlockSegment* table, int entries, AdamWFactors f,
                             bool packed_params) {
  const int64_t block = blockIdx.x;
  int lo = 0, hi = entries - 1;  // the last entry whose first block is at or before this one
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_block <= block) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const AdamWBlockSegment s = table[lo];
  const float decay = s.weight_decay ? f.decay : 1.0f;
  const int64_t begin = (block - s.first_block) * kBlockElements;
  const int64_t end = std::min(s.count, begin + kBlockElements);
#pragma unroll 4
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) {
    const int64_t i = s.offset + j, k = s.packed + j, w = packed_params ? k : i;
    const float g = grad[i] * f.grad_scale;
    const float mi = f.beta1 * m[k] + (1.0f - f.beta1) * g;
    const float vi = f.beta2 * v[k] + (1.0f - f.beta2) * (g * g);
    m[k] = mi;
    v[k] = vi;
    const float denom = __fdiv_rn(__fsqrt_rn(vi), f.bc2_sqrt) + f.eps;
    const float p = param[w] * decay - f.step_size * __fdiv_rn(mi, denom);
    param[w] = p;
    if (copy) copy[i] = from_f32<T>(p);
  }
}

}  // namespace

std::vector<AdamWBlockSegment> adamw_block_table(const AdamWSegment* segments, int count,
                                                 int64_t& blocks) {
  std::vector<AdamWBlockSegment> table;
  blocks = 0;
  for (int s = 0; s < count; ++s) {
    const AdamWSegment& seg = segments[s];
    if (seg.count == 0) continue;
    table.push_back({seg.offset, seg.packed, seg.count, blocks, seg.weight_decay ? 1 : 0});
    blocks += (seg.count + kBlockElements - 1) / kBlockElements;
  }
  return table;
}

template <typename T>
void adamw_step(float* params, const float* grads, float* m, float* v, T* copy,
                const AdamWBlockSegment* table, int entries, int64_t blocks, const AdamWHyper& h,
                bool packed_params, cudaStream_t stream) {
  if (blocks == 0) return;
  const double lr = h.lr;
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const AdamWFactors f{static_cast<float>(1.0 - lr * h.weight_decay),
                       static_cast<float>(lr / bc1),
                       static_cast<float>(std::sqrt(bc2)),
                       h.beta1,
                       h.beta2,
                       h.eps,
                       h.grad_scale};
  if (static_cast<const void*>(copy) == params) copy = nullptr;
  adamw_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      params, grads, m, v, copy, table, entries, f, packed_params);
  check_launch("adamw_kernel");
}

template void adamw_step<float>(float*, const float*, float*, float*, float*,
                                const AdamWBlockSegment*, int, int64_t, const AdamWHyper&, bool,
                                cudaStream_t);
template void adamw_step<bf16>(float*, const float*, float*, float*, bf16*,
                               const AdamWBlockSegment*, int, int64_t, const AdamWHyper&, bool,
                               cudaStream_t);

}  // namespace mamba::cuda
