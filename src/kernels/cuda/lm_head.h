// The LM head + mean cross-entropy on the GPU: Backend::lm_head_loss (math in
// kernels/cpu/cross_entropy.h and linear.h), chunked over tokens so the logits of the whole batch
// never exist. normed [T, C] and E [Vp, C] are in the activation type T (float or bf16); targets
// int32 [T]; dnormed [T, C] in T; dE fp32 [Vp, C] (+=); logits_out fp32 [T, Vp] (forward only).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/gemm.h"

namespace mamba::cuda {

// Tokens per chunk: the logits of one chunk take kLossChunkTokens * Vp * act_bytes (412 MB in
// bf16 at Vp = 50280); dlogits overwrite them.
inline constexpr int64_t kLossChunkTokens = 4096;

size_t lm_head_workspace_bytes(int64_t T, int Vp, size_t act_bytes, bool backward,
                               bool logits_given);

// Returns the mean loss (synchronizes the stream). Per chunk: logits = normed @ E^T in T (cuBLASLt,
// fp32 accumulation, each logit rounded once); one block per token computes its loss (fp32
// online softmax, the loss itself in double) and, when dnormed is non-null, dlogits = grad_scale
// / T * (softmax - onehot) in T over the logits; then dnormed = dlogits @ E and dE += dlogits^T @
// normed. With logits_out (forward only) the logits are fp32 and go there. The per-token losses
// are summed in double in a fixed order, so the loss and the gradients are bit-identical from run
// to run. In bf16 the rounded logits (errors up to 2^-9 relative, unbiased) move the mean loss by
// a few 1e-5 relative: a host simulation of 300 tokens over 50280 logits gave 2e-5 with logits up
// to 15 and 3e-5 with logits up to 60.
template <typename T>
double lm_head_loss(Gemm& gemm, const T* normed, const T* E, const int32_t* targets, int64_t tokens,
                    int C, int Vp, float grad_scale, T* dnormed, float* dE, float* logits_out,
                    void* workspace, cudaStream_t stream);

}  // namespace mamba::cuda
