#include "kernels/cpu/linear.h"

#include <cblas.h>

namespace mamba::cpu {

// Every GEMM is row-major; weight [out_dim, in_dim] is dense, so its leading dimension is in_dim.
// CBLAS rejects zero leading dimensions and some builds mishandle empty problems, so T == 0
// returns early.

void linear_forward(float* out, int64_t ld_out, const float* inp, int64_t ld_inp,
                    const float* weight, int64_t T, int in_dim, int out_dim) {
  if (T == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), out_dim, in_dim, 1.0f,
              inp, static_cast<int>(ld_inp), weight, in_dim, 0.0f, out, static_cast<int>(ld_out));
}

void linear_backward(float* dinp, int64_t ld_dinp, bool accumulate_dinp, float* dweight,
                     const float* dout, int64_t ld_dout, const float* inp, int64_t ld_inp,
                     const float* weight, int64_t T, int in_dim, int out_dim) {
  if (T == 0) return;
  if (dinp) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(T), in_dim, out_dim,
                1.0f, dout, static_cast<int>(ld_dout), weight, in_dim,
                accumulate_dinp ? 1.0f : 0.0f, dinp, static_cast<int>(ld_dinp));
  }
  if (!dweight) return;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out_dim, in_dim, static_cast<int>(T), 1.0f,
              dout, static_cast<int>(ld_dout), inp, static_cast<int>(ld_inp), 1.0f, dweight,
              in_dim);
}

}  // namespace mamba::cpu
