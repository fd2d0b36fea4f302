// A grid-stride loop with 64-bit indices (the embedding of the largest models exceeds 2^31
// elements with the layers it shares a buffer with); the math is kernels/init_element.h's.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/init_fill.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/init_element.h"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void init_fill_kernel(InitFill f, uint64_t key) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < f.n;
       i += stride) {
    f.dst[i] = init_element(f, key, i);
  }
}

}  // namespace

void init_fill(const InitFill& f, cudaStream_t stream) {
  if (f.n == 0) return;
  init_fill_kernel<<<grid_for(f.n, kThreads), kThreads, 0, stream>>>(f,
                                                                     stream_key(f.seed, f.stream));
  check_launch("init_fill_kernel");
}

}  // namespace mamba::cuda
