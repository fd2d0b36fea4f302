// Token embedding forward and backward; math and layout in embedding.h (CPU twin:
// kernels/cpu/embedding.h).
//
// Backward without atomics: a stable radix sort of the token indices by id groups the tokens of
// each id in increasing t; the first sorted position of each id owns that dtable row and walks
// its group in order. One block per (sorted position, slice of channels); blocks that are not at
// the start of a group exit at once.
#include <cub/device/device_radix_sort.cuh>
#include <limits>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/embedding.h"

namespace mamba::cuda {

namespace {

constexpr int kThreads = 128;
constexpr size_t kAlign = 256;

size_t align_up(size_t bytes) {
  return (bytes + kAlign - 1) / kAlign * kAlign;
}

__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const float* table,
                                         int C) {
  const int64_t t = blockIdx.x;
  const float* row = table + static_cast<int64_t>(ids[t]) * C;
  float* dst = out + t * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) dst[c] = row[c];
}

__global__ void iota_kernel(int32_t* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = static_cast<int32_t>(i);
}

// Grid: (T sorted positions, channel slices of blockDim.x).
__global__ void embedding_backward_kernel(float* dtable, const float* dout,
                                          const int32_t* sorted_ids, const int32_t* order,
                                          int64_t T, int C) {
  const int64_t i = blockIdx.x;
  const int32_t id = sorted_ids[i];
  if (i > 0 && sorted_ids[i - 1] == id) return;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float* dst = dtable + static_cast<int64_t>(id) * C + c;
  float acc = *dst;
  for (int64_t j = i; j < T && sorted_ids[j] == id; ++j) {
    acc += dout[static_cast<int64_t>(order[j]) * C + c];
  }
  *dst = acc;
}

struct SortBuffers {
  int32_t *sorted_ids, *order_in, *order;
  void* cub_temp;
  size_t cub_bytes;
  size_t total;
};

// With base == nullptr only the sizes are computed.
SortBuffers carve(void* base, int64_t T) {
  SortBuffers b{};
  const int n = static_cast<int>(T);
  check_cuda(cub::DeviceRadixSort::SortPairs(
                 nullptr, b.cub_bytes, static_cast<const int32_t*>(nullptr),
                 static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                 static_cast<int32_t*>(nullptr), n),
             "cub::DeviceRadixSort::SortPairs (size query)");
  const size_t ids_bytes = align_up(T * sizeof(int32_t));
  char* p = static_cast<char*>(base);
  auto take = [&](size_t bytes) {
    char* at = p ? p + b.total : nullptr;
    b.total += bytes;
    return at;
  };
  b.sorted_ids = reinterpret_cast<int32_t*>(take(ids_bytes));
  b.order_in = reinterpret_cast<int32_t*>(take(ids_bytes));
  b.order = reinterpret_cast<int32_t*>(take(ids_bytes));
  b.cub_temp = take(align_up(b.cub_bytes));
  return b;
}

void require_int32_tokens(int64_t T) {
  if (T >= std::numeric_limits<int32_t>::max()) {
    throw_error("embedding_backward: T = ", T, " tokens exceeds the int32 token index");
  }
}

}  // namespace

void embedding_forward(float* out, const int32_t* ids, const float* table, int64_t T, int C,
                       cudaStream_t stream) {
  if (T == 0) return;
  embedding_forward_kernel<<<static_cast<unsigned>(T), kThreads, 0, stream>>>(out, ids, table, C);
  check_launch("embedding_forward_kernel");
}

size_t embedding_backward_workspace_bytes(int64_t T) {
  require_int32_tokens(T);
  return carve(nullptr, T).total;
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t T, int C,
                        void* workspace, cudaStream_t stream) {
  if (T == 0) return;
  require_int32_tokens(T);
  SortBuffers b = carve(workspace, T);
  iota_kernel<<<static_cast<unsigned>((T + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      b.order_in, T);
  check_launch("iota_kernel");
  // Radix sort is stable: equal ids keep increasing t.
  check_cuda(cub::DeviceRadixSort::SortPairs(b.cub_temp, b.cub_bytes, ids, b.sorted_ids, b.order_in,
                                             b.order, static_cast<int>(T), 0,
                                             static_cast<int>(sizeof(int32_t) * 8), stream),
             "cub::DeviceRadixSort::SortPairs");
  const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>((C + kThreads - 1) / kThreads));
  embedding_backward_kernel<<<grid, kThreads, 0, stream>>>(dtable, dout, b.sorted_ids, b.order, T,
                                                           C);
  check_launch("embedding_backward_kernel");
}

}  // namespace mamba::cuda
