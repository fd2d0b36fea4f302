// Functions compiled for both the host and the GPU (one implementation, no twin to keep in step)
// are marked MAMBA_HOST_DEVICE: __host__ __device__ under nvcc, nothing under the host compiler.
#pragma once

#if defined(__CUDACC__)
#define MAMBA_HOST_DEVICE __host__ __device__
#else
#define MAMBA_HOST_DEVICE
#endif
