// Linear layer without bias, PyTorch convention (weight is [out_dim, in_dim]), token-major rows
// with explicit row strides so that slices of wider buffers ([x | z], [dt | B | C]) need no copy:
//   out[t, o]   = sum_i inp[t, i] * weight[o, i]
//   dinp[t, i] (+)= sum_o dout[t, o] * weight[o, i]     (dinp may be null; accumulate or overwrite)
//   dweight[o, i] += sum_t dout[t, o] * inp[t, i]
// GEMMs go through CBLAS (OpenBLAS).
#pragma once
#include <cstdint>

namespace mamba::cpu {

void linear_forward(float* out, int64_t ld_out, const float* inp, int64_t ld_inp,
                    const float* weight, int64_t T, int in_dim, int out_dim);
void linear_backward(float* dinp, int64_t ld_dinp, bool accumulate_dinp, float* dweight,
                     const float* dout, int64_t ld_dout, const float* inp, int64_t ld_inp,
                     const float* weight, int64_t T, int in_dim, int out_dim);

}  // namespace mamba::cpu
