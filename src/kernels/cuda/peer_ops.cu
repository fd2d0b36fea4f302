// Kernels of peer_ops.h.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/peer_ops.h"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void peer_mean_kernel(const PeerMeanParams p) {
  const float scale = 1.0f / p.count;
  const int64_t stride = int64_t{gridDim.x} * blockDim.x;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < p.n; i += stride) {
    float sum = p.in[0][i];
    for (int k = 1; k < p.count; ++k) sum += p.in[k][i];
    p.out[i] = sum * scale;
  }
}

__global__ void peer_signal_kernel(const PeerSignalParams p) {
  if (threadIdx.x >= p.count) return;
  __threadfence_system();
  *static_cast<volatile uint32_t*>(p.flags[threadIdx.x]) = p.value;
}

}  // namespace

void peer_mean(const PeerMeanParams& p, cudaStream_t stream) {
  if (p.n == 0) return;
  peer_mean_kernel<<<grid_for(p.n, kThreads), kThreads, 0, stream>>>(p);
  check_launch("peer_mean_kernel");
}

void peer_signal(const PeerSignalParams& p, cudaStream_t stream) {
  if (p.count == 0) return;
  peer_signal_kernel<<<1, kMaxPeerRanks, 0, stream>>>(p);
  check_launch("peer_signal_kernel");
}

}  // namespace mamba::cuda
