// AdamW, math in kernels/cpu/adamw.h. The scalar factors are computed on the host in double and
// rounded to fp32 exactly as the CPU twin does, so both apply the same fp32 constants.
#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kBlockElements = 8 * kThreads;  // elements of one segment per block

struct AdamWFactors {
  float decay, step_size, bc2_sqrt, beta1, beta2, eps, grad_scale;
};

// One element's update; m and v in place, the new parameter returned.
// --use_fast_math would turn sqrt and division into approximations; the update is memory-bound,
// so the correctly rounded intrinsics cost nothing and keep the step equal to the CPU's. A
// segment outside the decay group multiplies by 1.0f, which is what the CPU's factor
// (float)(1.0 - lr * 0.0) is.
__device__ __forceinline__ float adamw_update(float param, float grad, float& m, float& v,
                                              const AdamWFactors& f, float decay) {
  const float g = grad * f.grad_scale;
  m = f.beta1 * m + (1.0f - f.beta1) * g;
  v = f.beta2 * v + (1.0f - f.beta2) * (g * g);
  const float denom = __fdiv_rn(__fsqrt_rn(v), f.bc2_sqrt) + f.eps;
  return param * decay - f.step_size * __fdiv_rn(m, denom);
}

// Where one block's elements live: element j of its segment is grad[i0 + j], m[k0 + j] and
// param[w0 + j].
struct BlockSpan {
  int64_t i0, k0, w0, count;
  float decay;
};

// The tensors never overlap (the copy is null where it would alias param): __restrict__ lets a
// thread issue the loads of all its elements before the first store.
template <typename T>
struct AdamWTensors {
  float* __restrict__ param;
  const float* __restrict__ grad;
  float* __restrict__ m;
  float* __restrict__ v;
  T* __restrict__ copy;
};

template <typename T>
__device__ void update_scalar(const AdamWTensors<T>& t, const BlockSpan& b, const AdamWFactors& f,
                              int64_t from) {
#pragma unroll 4
  for (int64_t j = from + threadIdx.x; j < b.count; j += blockDim.x) {
    float m = t.m[b.k0 + j], v = t.v[b.k0 + j];
    const float p = adamw_update(t.param[b.w0 + j], t.grad[b.i0 + j], m, v, f, b.decay);
    t.m[b.k0 + j] = m;
    t.v[b.k0 + j] = v;
    t.param[b.w0 + j] = p;
    if (t.copy) t.copy[b.i0 + j] = from_f32<T>(p);
  }
}

// Four elements a thread at a time, with 16-byte accesses: the scalar loop reaches ~3 TB/s, this
// ~4.1 (a copy ~4.0) at 1.4B on one H200. The caller checks that the three offsets are multiples
// of 4 and the buffers 16-byte aligned.
template <typename T>
__device__ void update_vec4(const AdamWTensors<T>& t, const BlockSpan& b, const AdamWFactors& f) {
  const int64_t quads = b.count / 4;
#pragma unroll 2
  for (int64_t q = threadIdx.x; q < quads; q += blockDim.x) {
    const int64_t j = 4 * q;
    float g[4], m[4], v[4], p[4];
    load_vec<4>(t.grad + b.i0 + j, g);
    load_vec<4>(t.m + b.k0 + j, m);
    load_vec<4>(t.v + b.k0 + j, v);
    load_vec<4>(t.param + b.w0 + j, p);
#pragma unroll
    for (int e = 0; e < 4; ++e) p[e] = adamw_update(p[e], g[e], m[e], v[e], f, b.decay);
    store_vec<4>(t.m + b.k0 + j, m);
    store_vec<4>(t.v + b.k0 + j, v);
    store_vec<4>(t.param + b.w0 + j, p);
    if (t.copy) store_vec<4>(t.copy + b.i0 + j, p);
  }
  update_scalar(t, b, f, 4 * quads);
}

template <typename T>
__global__ void adamw_kernel(AdamWTensors<T> t, const AdamWBlockSegment* table, int entries,
                             AdamWFactors f, bool packed_params, bool buffers_aligned) {
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
  const int64_t begin = (block - s.first_block) * kBlockElements;
  BlockSpan b;
  b.i0 = s.offset + begin;
  b.k0 = s.packed + begin;
  b.w0 = packed_params ? b.k0 : b.i0;
  b.count = min(s.count - begin, kBlockElements);
  b.decay = s.weight_decay ? f.decay : 1.0f;
  if (buffers_aligned && (b.i0 | b.k0) % 4 == 0)
    update_vec4(t, b, f);
  else
    update_scalar(t, b, f, 0);
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
  const bool buffers_aligned =
      all_aligned_to({params, grads, m, v}, 16) && aligned_to(copy, 4 * sizeof(T));
  adamw_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      {params, grads, m, v, copy}, table, entries, f, packed_params, buffers_aligned);
  check_launch("adamw_kernel");
}

template void adamw_step<float>(float*, const float*, float*, float*, float*,
                                const AdamWBlockSegment*, int, int64_t, const AdamWHyper&, bool,
                                cudaStream_t);
template void adamw_step<bf16>(float*, const float*, float*, float*, bf16*,
                               const AdamWBlockSegment*, int, int64_t, const AdamWHyper&, bool,
                               cudaStream_t);

}  // namespace mamba::cuda
