// Why a test that needs two GPUs cannot run here ("" when two GPUs are present).
#pragma once
#include <string>

#ifdef MAMBA_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace mamba::test {

inline std::string two_gpus_missing() {
#ifdef MAMBA_HAVE_CUDA
  const int gpus = cuda_device_count();
#else
  const int gpus = 0;
#endif
  return gpus < 2 ? "needs 2 GPUs, found " + std::to_string(gpus) : "";
}

}  // namespace mamba::test
