// What the CUDA benchmarks share: error checks, device buffers filled with reproducible values,
// and medians of event-timed runs.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

inline void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

__device__ inline float hash_uniform(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
  x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
  return (x >> 40) * (1.f / 16777216.f);
}

template <typename T>
__global__ void fill_kernel(T* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = static_cast<T>(lo + (hi - lo) * hash_uniform(i, seed));
}

template <typename T>
struct Buffer {
  T* p = nullptr;
  explicit Buffer(size_t n) {
    ck(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), "cudaMalloc");
  }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
};

// n values uniform in [lo, hi), the same for the same seed.
template <typename T>
void fill(T* p, int64_t n, float lo, float hi, uint32_t seed) {
  fill_kernel<<<1024, 256>>>(p, n, lo, hi, seed);
  ck(cudaGetLastError(), "fill");
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace bench
