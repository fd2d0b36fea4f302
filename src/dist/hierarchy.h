// Hierarchical gradient reduction (dist.hierarchical): a mean over all ranks taken as a
// reduce-scatter among the ranks of a node, an all-reduce of each rank's 1/G piece among the
// ranks at the same place on the other nodes (one per node), and an all-gather in the node. The
// bytes each node sends are those of one flat all-reduce; the gain is the latency path: a ring
// over N nodes instead of N x G ranks.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace mamba {

struct NodeGroups {
  std::unique_ptr<Communicator> node;    // the ranks of this rank's node, in rank order
  std::unique_ptr<Communicator> across;  // one rank per node: those at this rank's place in it
};

// Collective over world: throws mamba::Error unless every node holds the same number of ranks.
void check_even_nodes(Communicator& world);
// Collective over world; checks the nodes as check_even_nodes does.
NodeGroups split_by_node(Communicator& world);

// In place: data[0..n) of every rank becomes the mean over all ranks. scratch is working memory
// kept between calls: the rank's piece, and, when n is not a multiple of the node size G, the
// data zero-padded to the next multiple.
void hierarchical_mean(NodeGroups& groups, float* data, int64_t n, std::vector<float>& scratch);

}  // namespace mamba
