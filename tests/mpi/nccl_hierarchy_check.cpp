// Run under mpirun on 2 GPUs (built with NCCL): NcclReducer split by node (dist.hierarchical)
// against the mean over ranks computed here in double precision, in fp32 and with bf16 on the
// wire, for buffers handed over as backward hands them (slices from the end down) with odd
// slice and bucket sizes, so that buckets and bf16 pieces leave remainders beyond a multiple of
// the node size. The nodes are the host's, or MAMBA_TEST_RANKS_PER_NODE's. A mismatch on any
// rank ends the job with status 1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "check_main.h"
#include "dist/communicator.h"
#include "dist/hierarchy.h"
#include "dist/nccl_reducer.h"
#include "kernels/cuda/cuda_backend.h"
#include "util/error.h"

namespace {

// Rank r's gradients for a buffer of n floats.
std::vector<float> gradients(int r, int64_t n) {
  return mamba::test::normal_floats(uint64_t(7919 * n + r), n);
}

int check() {
  mamba::Communicator& world = mamba::mpi_world();
  const int gpus = mamba::cuda_device_count();
  if (world.world() < 2 || gpus < 2) {
    std::printf("nccl_hierarchy_check: needs 2 ranks on 2 GPUs, found %d ranks, %d GPUs\n",
                world.world(), gpus);
    return 1;
  }
  const mamba::NodeGroups groups = mamba::split_by_node(world);
  const int rank = world.rank();
  std::printf("rank %d of %d: node %d, place %d of %d in the node\n", rank, world.world(),
              world.node(), groups.node->rank(), groups.node->world());
  const auto backend = mamba::make_cuda_backend(world.local_rank() % gpus, true);
  int failures = 0;
  for (const bool bf16 : {false, true}) {
    for (const int64_t n : {1001, 65537, 300007}) {
      std::vector<double> mean(size_t(n), 0.0), largest(size_t(n), 0.0);
      for (int r = 0; r < world.world(); ++r) {
        const std::vector<float> g = gradients(r, n);
        for (int64_t i = 0; i < n; ++i) {
          mean[i] += double(g[i]) / world.world();
          largest[i] = std::max(largest[i], double(std::abs(g[i])));
        }
      }
      const std::vector<float> mine = gradients(rank, n);
      float* buffer = static_cast<float*>(backend->allocate(size_t(n) * sizeof(float)));
      backend->upload(buffer, mine.data(), size_t(n) * sizeof(float));
      std::string id = rank == 0 ? mamba::nccl_unique_id() : std::string(128, '\0');
      world.broadcast(id.data(), id.size(), 0);
      {
        // Buckets of 999 floats or more, from slices of 777.
        mamba::NcclReducer reducer(id, rank, world.world(), *backend, buffer, n,
                                   999 * sizeof(float), 600.0, bf16);
        reducer.split_by_node(world.node());
        for (int64_t end = n; end > 0; end -= 777)
          reducer.ready(std::max<int64_t>(0, end - 777), end);
        reducer.finish();
        backend->synchronize();
      }
      std::vector<float> got(static_cast<size_t>(n));
      backend->download(got.data(), buffer, size_t(n) * sizeof(float));
      backend->release(buffer);
      for (int64_t i = 0; i < n; ++i) {
        // fp32: a few roundings of values of order 1. bf16: every value rounded to 8 bits, and
        // each of the two means (in the node, across nodes) rounded again.
        const double tolerance = bf16 ? std::ldexp(largest[i] + std::abs(mean[i]), -7)
                                      : 1e-6 * (1.0 + std::abs(mean[i]));
        if (std::abs(got[i] - mean[i]) > tolerance) {
          std::printf("rank %d: %s, n %lld, element %lld: reduced %.9g, mean %.9g\n", rank,
                      bf16 ? "bf16" : "fp32", (long long)n, (long long)i, got[i], mean[i]);
          if (++failures > 10) return 1;
        }
      }
    }
  }
  if (failures == 0) std::printf("rank %d: NCCL hierarchical reduction equals the mean\n", rank);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  return mamba::test::run_check(check);
}
