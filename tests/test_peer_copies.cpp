// Gradient averaging by the GPUs' copy engines (dist.peer_copies): on 2 GPUs a training run
// reaches the losses, gradient norms and weights of NCCL's all-reduce; two ranks, on one GPU or
// two, those of one process; and the reducer alone gives the mean bit for bit
// (tests/mpi/peer_reduce_check.cpp). Where it cannot run, the job stops with a one-line error.
#include <gtest/gtest.h>

#include <string>

#include "cli_runner.h"
#include "mpi_run_fixture.h"
#include "train/device.h"

namespace mamba {
namespace {

using test::contains;
using test::run_mamba;
using test::two_gpus_missing;

using PeerCopies = test::MpiRunFixture;

TEST_F(PeerCopies, CpuRunsGetAOneLineError) {
  const auto r = run_mamba("train " + config("cpu") + " dist.peer_copies=true");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.output, "dist.peer_copies = true")) << r.output;
  EXPECT_EQ(r.output.find('\n'), r.output.size() - 1) << r.output;
}

// With two ranks the mean is one rounding of the sum, halved, however it is added: the runs
// agree to the last bit, and the tolerance only absorbs what the comparison itself rounds.
TEST_F(PeerCopies, TwoGpusEqualNccl) {
  if (const std::string why = two_gpus_missing(); !why.empty()) GTEST_SKIP() << why;
  const std::string gpu =
      "train.micro_batch=2 train.device=cuda model.d_model=256 model.d_state=16 "
      "dist.bucket_mb=0.3 checkpoint.async=false ";
  ASSERT_TRUE(train("gpu_nccl", gpu)) << bytes_of(log("gpu_nccl"));
  ASSERT_TRUE(train("gpu_peer", gpu + "dist.peer_copies=true")) << bytes_of(log("gpu_peer"));
  expect_same_steps("gpu_peer", "gpu_nccl", 1e-6);
  expect_same_state("gpu_peer", "gpu_nccl", 1e-6);
}

// Two ranks with micro batch 1 and 2 accumulation steps, on the node's GPUs or both on one GPU
// (NCCL refuses a shared GPU; the copies then stay within it), reach the losses and weights of
// one process with micro batch 4, in fp32: what two ranks sum in another order differs by
// rounding only.
TEST_F(PeerCopies, TwoRanksWithAccumulationEqualOneProcess) {
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device (or a build without CUDA)";
  const std::string gpu =
      "train.device=cuda train.precision=fp32 model.d_model=256 model.d_state=16 "
      "checkpoint.async=false ";
  ASSERT_TRUE(train("gpu_one", gpu, "", 1)) << bytes_of(log("gpu_one"));
  ASSERT_TRUE(train("gpu_two", gpu + "train.micro_batch=1 dist.peer_copies=true"))
      << bytes_of(log("gpu_two"));
  EXPECT_TRUE(contains(bytes_of(log("gpu_two")), "micro batch 1 x 2 accum"))
      << bytes_of(log("gpu_two"));
  expect_same_steps("gpu_two", "gpu_one", 1e-4);
  expect_same_state("gpu_two", "gpu_one", 1e-4);
}

// Two ranks on the node's GPUs, or both on one: the copies then stay within that GPU, and the
// ordering between the ranks is the same.
TEST_F(PeerCopies, ReducerEqualsTheMeanBitForBit) {
#ifndef MAMBA_PEER_REDUCE_CHECK
  GTEST_SKIP() << "built without NCCL";
#else
  if (cuda_device_count() == 0) GTEST_SKIP() << "needs a GPU";
  expect_check_passes("peer_check", MAMBA_PEER_REDUCE_CHECK,
                      "rank 1: peer reduction equals the mean bit for bit");
#endif
}

}  // namespace
}  // namespace mamba
