#include "dist/hierarchy.h"

#include <algorithm>

#include "util/error.h"

namespace mamba {

void check_even_nodes(Communicator& world) {
  // Ranks per node index (node indices run from 0 and are fewer than the ranks).
  std::vector<uint32_t> ranks(size_t(world.world()), 0);
  ranks[size_t(world.node())] = 1;
  world.allreduce_sum(ranks.data(), int64_t(ranks.size()));
  const uint32_t mine = ranks[size_t(world.node())];
  for (const uint32_t r : ranks) {
    if (r != 0 && r != mine) {
      throw_error(
          "config error: dist.hierarchical = true needs the same number of ranks on every "
          "node, and this job's nodes differ (this rank's node holds ",
          mine, " of the ", world.world(), " ranks",
          "): start as many ranks per node (--map-by ppr:G:node) or set "
          "dist.hierarchical=false");
    }
  }
}

NodeGroups split_by_node(Communicator& world) {
  check_even_nodes(world);
  NodeGroups g;
  g.node = world.split(world.node(), world.rank());
  g.across = world.split(g.node->rank(), world.rank());
  return g;
}

void hierarchical_mean(NodeGroups& groups, float* data, int64_t n, std::vector<float>& scratch) {
  Communicator& node = *groups.node;
  const int64_t size = node.world();
  const int64_t slice = (n + size - 1) / size;
  // scratch: the bucket padded to whole slices (when it needs it), then this rank's piece, which
  // MPI's reduce-scatter receives apart (it does not work in place). It only grows.
  scratch.resize(std::max(scratch.size(), size_t(slice * (size + 1))));
  float* work = data;
  if (slice * size != n) {
    std::fill(std::copy(data, data + n, scratch.begin()), scratch.begin() + slice * size, 0.0f);
    work = scratch.data();
  }
  float* piece = scratch.data() + slice * size;
  node.reduce_scatter_mean(work, piece, slice);
  groups.across->allreduce_mean(piece, slice);
  std::copy(piece, piece + slice, work + node.rank() * slice);
  node.allgather(work, slice);
  if (work != data) std::copy(work, work + n, data);
}

}  // namespace mamba
