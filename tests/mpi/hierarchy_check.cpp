// Run under mpirun: hierarchical reduction (dist/hierarchy.h) against the mean over ranks
// computed here in double precision, and against the flat all-reduce, for buffers whose size is
// and is not a multiple of the node size. Every rank prints where the framework places it
// (rank, node, local rank, place in the node) and checks it: with MAMBA_TEST_RANKS_PER_NODE=k,
// node rank / k and place rank % k; otherwise one node (this is one host). A mismatch on any rank
// ends the job with status 1.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "check_main.h"
#include "dist/communicator.h"
#include "dist/hierarchy.h"
#include "util/error.h"

namespace {

// Rank r's gradients for a buffer of n floats.
std::vector<float> gradients(int r, int64_t n) {
  return mamba::test::normal_floats(uint64_t(1000003 * n + r), n);
}

int check() {
  mamba::Communicator& world = mamba::mpi_world();
  mamba::NodeGroups groups = mamba::split_by_node(world);
  const int rank = world.rank(), node_size = groups.node->world();
  std::printf("rank %d of %d: node %d, local rank %d, place %d of %d in the node, %d nodes\n", rank,
              world.world(), world.node(), world.local_rank(), groups.node->rank(), node_size,
              groups.across->world());
  std::fflush(stdout);
  const char* hook = std::getenv("MAMBA_TEST_RANKS_PER_NODE");
  const int k = hook ? std::atoi(hook) : world.world();
  const int expect_node = rank / k, expect_place = rank % k;
  const int expect_size = std::min(k, world.world() - expect_node * k);
  if (world.node() != expect_node || groups.node->rank() != expect_place ||
      node_size != expect_size) {
    std::printf("rank %d: expected node %d, place %d of %d\n", rank, expect_node, expect_place,
                expect_size);
    return 1;
  }
  int failures = 0;
  std::vector<float> scratch;
  for (int64_t n : {1, 2, 3, 5, 8, 1000, 1001, 1003, 65537}) {
    std::vector<double> mean(size_t(n), 0.0);
    for (int r = 0; r < world.world(); ++r) {
      const std::vector<float> g = gradients(r, n);
      for (int64_t i = 0; i < n; ++i) mean[i] += double(g[i]) / world.world();
    }
    std::vector<float> flat = gradients(rank, n), hier = flat;
    world.allreduce_mean(flat.data(), n);
    mamba::hierarchical_mean(groups, hier.data(), n, scratch);
    for (int64_t i = 0; i < n; ++i) {
      // A few fp32 roundings of values of order 1: the sums differ only in their order.
      const double tolerance = 1e-6 * (1.0 + std::abs(mean[i]));
      if (std::abs(hier[i] - mean[i]) > tolerance || std::abs(flat[i] - mean[i]) > tolerance) {
        std::printf("rank %d: n %lld, element %lld: hierarchical %.9g, flat %.9g, mean %.9g\n",
                    rank, (long long)n, (long long)i, hier[i], flat[i], mean[i]);
        if (++failures > 10) return 1;
      }
    }
  }
  if (failures == 0) std::printf("rank %d: hierarchical mean equals the flat one\n", rank);
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main() {
  return mamba::test::run_check(check);
}
