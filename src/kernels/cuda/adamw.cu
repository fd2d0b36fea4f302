// AdamW, math in kernels/cpu/adamw.h. The scalar factors are computed on the host in double and
// rounded to fp32 exactly as the CPU twin does, so both apply the same fp32 constants.
#include <cmath>

#include "kernels/cuda/adamw.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;

struct AdamWFactors {
  float decay, step_size, bc2_sqrt, beta1, beta2, eps;
};

// --use_fast_math would turn sqrt and division into approximations; the update is memory-bound,
// so the correctly rounded intrinsics cost nothing and keep the step equal to the CPU's.
__global__ void adamw_kernel(float* param, const float* grad, float* m, float* v, int64_t n,
                             AdamWFactors f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = grad[i];
    const float mi = f.beta1 * m[i] + (1.0f - f.beta1) * g;
    const float vi = f.beta2 * v[i] + (1.0f - f.beta2) * (g * g);
    m[i] = mi;
    v[i] = vi;
    const float denom = __fdiv_rn(__fsqrt_rn(vi), f.bc2_sqrt) + f.eps;
    param[i] = param[i] * f.decay - f.step_size * __fdiv_rn(mi, denom);
  }
}

}  // namespace

void adamw_update(float* param, const float* grad, float* m, float* v, int64_t n,
                  const AdamWHyper& h, cudaStream_t stream) {
  if (n == 0) return;
  const double lr = h.lr;
  const double bc1 = 1.0 - std::pow(static_cast<double>(h.beta1), static_cast<double>(h.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(h.beta2), static_cast<double>(h.step));
  const AdamWFactors f{static_cast<float>(1.0 - lr * h.weight_decay),
                       static_cast<float>(lr / bc1),
                       static_cast<float>(std::sqrt(bc2)),
                       h.beta1,
                       h.beta2,
                       h.eps};
  adamw_kernel<<<grid_for(n, kThreads), kThreads, 0, stream>>>(param, grad, m, v, n, f);
  check_launch("adamw_kernel");
}

}  // namespace mamba::cuda
