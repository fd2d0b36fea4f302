// Recurrent (generation) mode of the conv and the scan: one new token for each of s.batch
// sequences per call, with each layer's state carried between calls. Same math as conv1d.h and
// scan.h at the last position; rows are the batch's sequences (b = 0 .. batch-1).
//   Conv1dStep::state [batch, D, K-1]:  the previous K-1 inputs of each channel, oldest first
//                                       (zeros at the start of a sequence).
//   ssm_state [batch, d_inner, d_state]: h after the previous token (zeros at the start).
// Layouts of the activations as in conv1d.h and scan.h with T = batch and seqlen 1.
#pragma once
#include "kernels/ops.h"

namespace mamba::cpu {

// out[b, d] = silu(bias[d] + sum_k weight[d, k] * window[k]), window = state[b, d, :] then
// x[b, d]; then x[b, d] is shifted into state[b, d, :]. Activations fp32.
void conv1d_silu_step(const Conv1dShape& s, const Conv1dStep& op);

// dt = softplus(delta + delta_bias); h = exp(dt A) h + dt B u; out = (C . h + D u) * silu(z).
// Activations fp32.
void selective_scan_step(const ScanShape& s, const ScanInputs& in, Act out, float* ssm_state);

// The first index of each row's largest value (the greedy sampler's choice).
void argmax_rows(const ArgmaxRows& op);

}  // namespace mamba::cpu
