// Selective scan with delta bias + softplus, D skip and z gating (Mamba-1), fp32, token-major.
// For batch b, channel d, state n, time t (h_{-1} = 0):
//   delta'[t]  = softplus(delta[t, d] + delta_bias[d])
//   h[t, n]    = exp(delta'[t] * A[d, n]) * h[t-1, n] + delta'[t] * B[t, n] * u[t, d]
//   y[t]       = sum_n C[t, n] * h[t, n] + D[d] * u[t, d]
//   out[t, d]  = y[t] * silu(z[t, d])
// Layouts (rows are tokens, t = b * seqlen + s):
//   u, delta, out: [T, d_inner] contiguous;  z: [T, ld_z] (the second half of in_proj's output);
//   B, C: [T, ld_bc] (slices of x_proj's output [dt | B | C]); A: [d_inner, d_state] (negative);
//   last_state: [batch, d_inner, d_state], h after the last step.
// Backward: gradients of sum(out * dout). du, ddelta, dz, dB, dC are written (overwrite) with the
// same layouts and strides as their inputs; dA, dD, ddelta_bias accumulate (+=).
// Hidden states are recomputed inside backward; reductions over channels (dB, dC) and over batch
// (dA, dD, ddelta_bias) use a fixed partition, so results do not depend on the thread count.
#pragma once
#include "kernels/ops.h"

namespace mamba::cpu {

// in and out: fp32 (ActCast throws mamba::Error naming the argument otherwise).
void selective_scan_forward(const ScanShape& s, const ScanInputs& in, Act out, float* last_state);
void selective_scan_backward(const ScanShape& s, const ScanInputs& in, ConstAct dout,
                             const ScanGrads& grads);

}  // namespace mamba::cpu
