#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ and data/demo/ in the tree): ZeRO-1
# (dist.shard_optimizer) against the unsharded optimizer. The 2-GPU tests (sharded equals
# unsharded, the reported peak counts NCCL's buffers, the weight gather moves every bit) and the
# model without an fp32 master on one GPU (any skip fails), peak memory and speed (bench_train,
# 130M and 1.4B; both without the asynchronous checkpoint writer, whose device snapshot only
# unsharded runs allocate), and loss (130M, 200 steps on the demo corpus, each run with the same
# seed and data). Logs and JSON go to $OUT.
source "$(dirname "$0")/common.sh"

twin() {
  scripts/gpu/cuda_tests.sh build-gpu/mamba_tests "$out/zero_twin.log" \
    --gtest_filter='ShardedTraining.TwoGpus*:NcclMemory.*:NcclGather.*:ExactWeights.*'
}

memory() {
  bench_flag_both_ways --shard-optimizer "$out/zero.jsonl" checkpoint.async=false
}

loss() {
  loss_both_ways dist.shard_optimizer zero checkpoint.interval=100
}

nvidia-smi -L
check "build" build_gpu mamba bench_train mamba_tests
check "2-GPU tests: sharded equals unsharded, the peak counts NCCL, none skipped" twin
check "peak memory and speed: unsharded vs sharded optimizer" memory
check "loss: 130M, 200 steps, 2 GPUs, unsharded vs sharded optimizer" loss
exit 0
