// Run under mpirun on one node, the ranks spread over its GPUs (several may share one): PeerReducer
// (dist.peer_copies) against the mean computed here as the reducer defines it (fp32, ranks added in
// rank order, times 1 / world), which must match bit for bit on every rank. Buffers are handed over
// as backward hands them (slices from the end down); bucket sizes are odd, and one bucket is large
// enough for its chunks to go in several pieces. Three steps per reducer, each with new gradients,
// exercise the counters that order the ranks from one step to the next. A mismatch ends the job
// with status 1.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "check_main.h"
#include "dist/communicator.h"
#include "dist/peer_reducer.h"
#include "kernels/cuda/cuda_backend.h"

namespace {

// Rank r's gradients at `step` for a buffer of n floats.
std::vector<float> gradients(int r, int step, int64_t n) {
  return mamba::test::normal_floats(uint64_t(7919 * n + 31 * step + r), n);
}

int check() {
  mamba::Communicator& world = mamba::mpi_world();
  const int gpus = mamba::cuda_device_count();
  if (world.world() < 2 || gpus < 1) {
    std::printf("peer_reduce_check: needs 2 or more ranks and a GPU, found %d ranks, %d GPUs\n",
                world.world(), gpus);
    return 1;
  }
  const int rank = world.rank(), ranks = world.world();
  const auto backend = mamba::make_cuda_backend(world.local_rank() % gpus, true);
  struct Case {
    int64_t n, slice, bucket_floats;
  };
  // The last case: one bucket whose chunks exceed the reducer's 4 Mi-float pieces.
  const Case cases[] = {{1, 1, 1}, {1001, 777, 999}, {65537, 777, 999}, {9000001, 777777, 1 << 27}};
  int failures = 0;
  for (const Case& c : cases) {
    float* buffer = static_cast<float*>(backend->allocate(size_t(c.n) * sizeof(float)));
    auto reducer = std::make_unique<mamba::PeerReducer>(world, *backend, buffer, c.n,
                                                        size_t(c.bucket_floats) * 4, 600.0);
    for (int step = 0; step < 3 && failures == 0; ++step) {
      std::vector<float> mean(size_t(c.n), 0.0f);
      for (int r = 0; r < ranks; ++r) {
        const std::vector<float> g = gradients(r, step, c.n);
        for (int64_t i = 0; i < c.n; ++i) mean[i] = r == 0 ? g[i] : mean[i] + g[i];
      }
      for (float& x : mean) x *= 1.0f / ranks;
      const std::vector<float> mine = gradients(rank, step, c.n);
      backend->upload(buffer, mine.data(), size_t(c.n) * sizeof(float));
      for (int64_t end = c.n; end > 0; end -= c.slice)
        reducer->ready(std::max<int64_t>(0, end - c.slice), end);
      reducer->finish();
      std::vector<float> got(size_t(c.n));
      backend->download(got.data(), buffer, size_t(c.n) * sizeof(float));
      backend->synchronize();
      for (int64_t i = 0; i < c.n; ++i) {
        if (std::memcmp(&got[i], &mean[i], sizeof(float)) != 0) {
          std::printf("rank %d: n %lld, step %d, element %lld: reduced %.9g, mean %.9g\n", rank,
                      (long long)c.n, step, (long long)i, got[i], mean[i]);
          if (++failures > 10) return 1;
        }
      }
    }
    reducer.reset();
    backend->release(buffer);
  }
  if (failures == 0) std::printf("rank %d: peer reduction equals the mean bit for bit\n", rank);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  return mamba::test::run_check(check);
}
