// How the GPU reducers (nccl_reducer.cpp, peer_reducer.cpp) order their communication stream
// after the compute stream, and wait for it on the host without hanging on a lost peer.
#pragma once
#include <cuda_runtime.h>

#include <chrono>
#include <thread>

#include "kernels/cuda/cuda_check.h"

namespace mamba {

// The work queued on `from` up to now comes before what is queued on `to` next.
inline void follow(cudaStream_t to, cudaStream_t from, cudaEvent_t event) {
  cuda::check_cuda(cudaEventRecord(event, from), "cudaEventRecord");
  cuda::check_cuda(cudaStreamWaitEvent(to, event, 0), "cudaStreamWaitEvent");
}

// Polls `event` until it completes (true) or timeout_s have passed (false), calling check()
// between polls for the caller's own errors (it may throw). Polling instead of blocking lets a
// lost peer surface as an error, not a hang.
template <typename Check>
bool wait_for(cudaEvent_t event, double timeout_s, const char* what, Check&& check) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const cudaError_t q = cudaEventQuery(event);
    if (q == cudaSuccess) return true;
    if (q != cudaErrorNotReady) cuda::check_cuda(q, what);
    check();
    const double waited =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

}  // namespace mamba
