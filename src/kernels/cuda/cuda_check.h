// Error checks for the CUDA runtime and cuBLASLt: a failed call becomes a mamba::Error that names
// the call and the runtime's reason, so the trainer reports it like any other error.
#pragma once
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "util/error.h"

namespace mamba::cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_error("cuda error: ", what, ": ", cudaGetErrorString(e));
}

// After a kernel launch. A bad launch configuration shows here; a fault inside the kernel shows
// at the next synchronizing call.
inline void check_launch(const char* kernel) {
  check_cuda(cudaGetLastError(), kernel);
}

inline void check_cublas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw_error("cublas error: ", what, ": ", cublasLtGetStatusString(s));
  }
}

}  // namespace mamba::cuda
