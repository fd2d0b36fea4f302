// Hierarchical gradient reduction (dist.hierarchical): training runs whose ranks are split into
// "nodes" reach the losses, gradient norms and weights of the flat all-reduce and of one process
// with the same global batch. One host plays several nodes through MAMBA_TEST_RANKS_PER_NODE
// (Open MPI takes every name of this host, and a hostfile naming localhost twice, as one node).
// The GPU twins run the NCCL path on 2 GPUs as two one-GPU nodes and as one node of two.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cli_runner.h"
#include "mpi_run_fixture.h"

namespace mamba {
namespace {

using test::contains;
using test::run_mamba;
using test::two_gpus_missing;

using HierarchicalTraining = test::MpiRunFixture;

// Buckets of 25 floats: odd, so that most buckets leave a remainder on nodes of 2 ranks.
const std::string kOddBuckets = "dist.bucket_mb=0.0000954 ";

// 2 nodes of 2 ranks, micro batch 1: the flat 4-rank run and one process with micro batch 4.
TEST_F(HierarchicalTraining, TwoNodesOfTwoEqualFlatAndOneProcess) {
  ASSERT_EQ(run_mamba("train " + config("one_process")).status, 0);
  const std::string four = "train.micro_batch=1 " + kOddBuckets;
  const std::string nodes_of_2 = "MAMBA_TEST_RANKS_PER_NODE=2";
  ASSERT_TRUE(train("flat", four, nodes_of_2, 4)) << bytes_of(log("flat"));
  ASSERT_TRUE(train("hierarchical", four + "dist.hierarchical=true", nodes_of_2, 4))
      << bytes_of(log("hierarchical"));
  const std::string out = bytes_of(log("hierarchical"));
  EXPECT_TRUE(contains(out, "rank 3 of 4: node 1, local rank 3 (dist.hierarchical)")) << out;
  EXPECT_TRUE(contains(out, "rank 1 of 4: node 0, local rank 1 (dist.hierarchical)")) << out;
  expect_same_steps("hierarchical", "flat", 1e-6);
  expect_same_state("hierarchical", "flat", 1e-6);
  expect_same_steps("hierarchical", "one_process", 1e-5);
  expect_same_state("hierarchical", "one_process", 1e-5);
}

// The recipe's launch on one host: scripts/launch.sh with a hostfile naming localhost twice and
// PER_NODE ranks per node (Open MPI merges the two lines into one host of two slots, so the hook
// plays two nodes of one rank), gradient accumulation, the default buckets; and one node of two
// ranks (no hook). Both equal one process.
TEST_F(HierarchicalTraining, HostfileOfTwoNodesAndOneNodeEqualOneProcess) {
  ASSERT_EQ(run_mamba("train " + config("single")).status, 0);
  const std::string launch = "HOSTFILE=" + std::string(MAMBA_BUILD_DIR) +
                             "/localhost_twice.hosts PER_NODE=2 MAMBA_TEST_RANKS_PER_NODE=1 "
                             "MAMBA=" MAMBA_BINARY " " MAMBA_TEST_DATA
                             "/../../scripts/launch.sh 2 ";
  const std::string two = " train.micro_batch=1 dist.hierarchical=true";
  ASSERT_EQ(std::system(
                (launch + config("two_nodes") + two + " > " + log("two_nodes") + " 2>&1").c_str()),
            0)
      << bytes_of(log("two_nodes"));
  const std::string out = bytes_of(log("two_nodes"));
  EXPECT_TRUE(contains(out, "rank 0 of 2: node 0, local rank 0 (dist.hierarchical)")) << out;
  EXPECT_TRUE(contains(out, "rank 1 of 2: node 1, local rank 1 (dist.hierarchical)")) << out;
  EXPECT_TRUE(contains(out, "micro batch 1 x 2 accum")) << out;
  expect_same_steps("two_nodes", "single", 1e-5);
  expect_same_state("two_nodes", "single", 1e-5);
  ASSERT_TRUE(train("one_node", two)) << bytes_of(log("one_node"));
  EXPECT_TRUE(contains(bytes_of(log("one_node")), "rank 1 of 2: node 0, local rank 1"))
      << bytes_of(log("one_node"));
  expect_same_steps("one_node", "single", 1e-5);
  expect_same_state("one_node", "single", 1e-5);
}

TEST_F(HierarchicalTraining, UnsupportedSetupsGetOneLineErrors) {
  const auto r =
      run_mamba("train " + config("bad") + " dist.hierarchical=true dist.shard_optimizer=true");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.output, "dist.hierarchical")) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
  // 3 ranks in nodes of 2: the second node holds 1.
  EXPECT_FALSE(train("uneven", "train.micro_batch=1 train.global_batch=3 dist.hierarchical=true",
                     "MAMBA_TEST_RANKS_PER_NODE=2", 3));
  EXPECT_TRUE(contains(bytes_of(log("uneven")), "the same number of ranks on every node"))
      << bytes_of(log("uneven"));
  EXPECT_FALSE(train("bad_hook", "", "MAMBA_TEST_RANKS_PER_NODE=x"));
  EXPECT_TRUE(contains(bytes_of(log("bad_hook")), "MAMBA_TEST_RANKS_PER_NODE = 'x'"))
      << bytes_of(log("bad_hook"));
}

// The GPU twin: NCCL's hierarchical reduction on 2 GPUs, as two nodes of one GPU (the hook) and
// as one node of two, gives the losses and weights of the flat all-reduce within bf16
// tolerance, in fp32 and with bf16 gradients, with buckets of odd sizes.
TEST_F(HierarchicalTraining, TwoGpusHierarchicalEqualFlat) {
  if (const std::string why = two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  const std::string gpu =
      "train.micro_batch=2 train.device=cuda model.d_model=256 model.d_state=16 "
      "dist.bucket_mb=0.3 ";
  for (const std::string bf16 : {"false", "true"}) {
    SCOPED_TRACE("bf16_grads " + bf16);
    const std::string grads = gpu + "dist.bf16_grads=" + bf16 + " ";
    const std::string flat = "gpu_flat_" + bf16;
    ASSERT_TRUE(train(flat, grads)) << bytes_of(log(flat));
    for (const std::string ranks_per_node : {"1", "2"}) {
      const std::string name = "gpu_nodes_of_" + ranks_per_node + "_" + bf16;
      ASSERT_TRUE(train(name, grads + "dist.hierarchical=true",
                        "MAMBA_TEST_RANKS_PER_NODE=" + ranks_per_node))
          << bytes_of(log(name));
      EXPECT_TRUE(contains(bytes_of(log(name)),
                           "rank 1 of 2: node " + std::string(ranks_per_node == "1" ? "1" : "0")))
          << bytes_of(log(name));
      expect_same_steps(name, flat, 2e-3);
      expect_same_state(name, flat, 2e-3);
    }
  }
}

// The NCCL reducer split by node on 2 GPUs, as two one-GPU nodes and as one node of two, against
// the mean in double precision, fp32 and bf16, with buckets and bf16 pieces of odd sizes (the
// padded remainder) (tests/mpi/nccl_hierarchy_check.cpp).
TEST_F(HierarchicalTraining, TwoGpusNcclReductionByNodeEqualsTheMean) {
  if (const std::string why = two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
#ifndef MAMBA_NCCL_HIERARCHY_CHECK
  GTEST_SKIP() << "built without NCCL";
#else
  for (const std::string ranks_per_node : {"1", "2"}) {
    expect_check_passes("nccl_check_" + ranks_per_node, MAMBA_NCCL_HIERARCHY_CHECK,
                        "rank 1: NCCL hierarchical reduction equals the mean",
                        "MAMBA_TEST_RANKS_PER_NODE=" + ranks_per_node);
  }
#endif
}

}  // namespace
}  // namespace mamba
