// Token embedding on the GPU: the math of kernels/cpu/embedding.h, token-major fp32
// (out[t, c] = table[ids[t], c]; backward dtable[ids[t], c] += dout[t, c]). ids are int32 device
// pointers with values in [0, vocab).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace mamba::cuda {

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int C,
                       cudaStream_t stream);

// Deterministic: every dtable element is owned by one thread that adds its tokens in the order
// t = 0..T-1, starting from the value dtable held (the CPU twin's order, so results match it
// bit for bit). Needs embedding_backward_workspace_bytes(T) of workspace; T < 2^31.
size_t embedding_backward_workspace_bytes(int64_t T);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int C,
                        void* workspace, cudaStream_t stream);

}  // namespace mamba::cuda
