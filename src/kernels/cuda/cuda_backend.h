// The CUDA backend: Backend (kernels/backend.h) on one GPU, with bf16 activations and fp32
// accumulation, or fp32 activations (the debugging path, which matches the CPU backend to
// rounding). This header names no CUDA type, so host-only code can include it.
#pragma once
#include <memory>

#include "kernels/backend.h"

namespace mamba {

// Usable CUDA devices; 0 when there is no driver or no device.
int cuda_device_count();

// A backend on `device`; throws mamba::Error when the device cannot be used. tune_gemms: time
// candidate GEMM algorithms on first use (kernels/cuda/gemm.h) instead of taking cuBLASLt's first.
std::unique_ptr<Backend> make_cuda_backend(int device, bool bf16, bool tune_gemms = false);

}  // namespace mamba
