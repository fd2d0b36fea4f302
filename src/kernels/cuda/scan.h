// CUDA selective scan (Mamba-1) with delta bias + softplus, D skip and z gating: the GPU twin of
// kernels/cpu/scan.h, with the same math, the same token-major layouts and strides, and the same
// overwrite / accumulate rules (du, ddelta, dz, dB, dC are overwritten; dA, dD, ddelta_bias += ).
//
// Two precisions: bf16 tensors (u, delta, z, B, C, out, dout and their gradients) with fp32 math
// and state inside, and fp32 throughout (the debugging path). A, D, delta_bias, dA, dD,
// ddelta_bias and last_state are fp32 in both.
//
// The forward saves the state every kScanCheckpointEvery steps in the activation type
// (`checkpoints`, sized by scan_checkpoint_bytes); the backward recomputes the states between them.
// The caller keeps the checkpoints from forward to backward (pass nullptr to the forward when no
// backward follows). Both passes also need a transient workspace of scan_workspace_bytes (reusable
// between calls on one stream). Gradients are deterministic: the same inputs give bit-identical
// results on every run (fixed-order reductions, no atomics). Only d_state = 16 is supported; other
// shapes are rejected with mamba::Error. All pointers are device pointers; work is queued on
// `stream`.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/ops.h"

namespace mamba::cuda {

// Steps between two saved states: one state element (2 or 4 bytes) per (token, channel).
inline constexpr int kScanCheckpointEvery = 16;

struct ScanTuning {
  // Pieces each sequence is cut into and scanned in parallel (each piece costs one extra pass of
  // exps); 0 picks from the shape and the device: 1 when batch * d_inner fills the GPU.
  int segments = 0;
  // States per thread of the backward: 4 (four threads per channel) or 16 (one); 0 picks from the
  // shape and the device.
  int backward_states = 0;
};

size_t scan_checkpoint_bytes(const ScanShape& s, ActType type);
size_t scan_workspace_bytes(const ScanShape& s, const ScanTuning& tuning = {});

// The activations (in, out, dout, the gradients' du, ddelta, dB, dC, dz) are all bf16 or all
// fp32, as in.u is; another mix throws mamba::Error naming the argument.
void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out, float* last_state,
                            void* checkpoints, void* workspace, cudaStream_t stream,
                            const ScanTuning& tuning = {});
void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout,
                             const void* checkpoints, const ScanGrads& grads, void* workspace,
                             cudaStream_t stream, const ScanTuning& tuning = {});

}  // namespace mamba::cuda
