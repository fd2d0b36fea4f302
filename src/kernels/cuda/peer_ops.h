// What a reduction by copy engines runs on the SMs (dist/peer_reducer.h): the mean of a piece
// over the ranks, and the flag stores that tell the other GPUs a stage is done. All pointers
// are device pointers (a peer's, mapped into this process, where so named); work is queued on
// `stream`.
#pragma once
#include <cuda_runtime_api.h>

#include <cstdint>

namespace mamba::cuda {

constexpr int kMaxPeerRanks = 8;

// out[i] = (in[0][i] + in[1][i] + ... + in[count - 1][i]) / count, added in the order given,
// i < n. out may be one of the inputs.
struct PeerMeanParams {
  float* out;
  const float* in[kMaxPeerRanks];
  int count;
  int64_t n;
};
void peer_mean(const PeerMeanParams& p, cudaStream_t stream);

// *flags[k] = value for k < count, after everything queued before it on the stream, each store
// made visible to the whole system (the flags live in other GPUs' memory).
struct PeerSignalParams {
  uint32_t* flags[kMaxPeerRanks];
  int count;
  uint32_t value;
};
void peer_signal(const PeerSignalParams& p, cudaStream_t stream);

}  // namespace mamba::cuda
