#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ in the tree): hierarchical gradient reduction
# (dist.hierarchical). The 2-GPU twin tests (NCCL's hierarchical path as two one-GPU nodes and as
# one node of two equals the flat all-reduce in training, and the mean in double precision on
# odd-sized buckets; any skip fails), the CPU hierarchy tests, and the step time of 1.4B (4 x 2048
# per GPU, bf16 gradients, 128 MiB buckets) flat and hierarchical over NVLink, where the split can
# only cost (one node of 2, or two nodes of 1 played by MAMBA_TEST_RANKS_PER_NODE). Logs and JSON
# go to $OUT.
source "$(dirname "$0")/common.sh"

twin() {
  scripts/gpu/cuda_tests.sh build-gpu/mamba_tests "$out/hierarchical_twin.log" \
    --gtest_filter='HierarchicalTraining.*'
}

cpu_tests() {
  (cd build-gpu && ctest -R 'hierarchy' --output-on-failure) | tail -8
}

speed() {
  for variant in "flat 0 2" "one_node_of_2 1 2" "two_nodes_of_1 1 1"; do
    read -r name hierarchical per_node <<<"$variant"
    MAMBA_TEST_RANKS_PER_NODE=$per_node mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE \
      -x OMP_NUM_THREADS=4 -x MAMBA_TEST_RANKS_PER_NODE build-gpu/bench_train --device cuda \
      --model 1.4b --batch 4 --seqlen 2048 --steps 10 --bf16-grads 1 \
      --hierarchical "$hierarchical" dist.bucket_mb=128 | tee "$out/hierarchical_$name.json"
  done
}

nvidia-smi -L
check "build" build_gpu mamba bench_train mamba_tests hierarchy_check nccl_hierarchy_check
check "2-GPU twin tests: hierarchical equals flat and the mean, none skipped" twin
check "CPU hierarchy tests" cpu_tests
check "1.4B step time: flat vs hierarchical (bf16, 128 MiB buckets)" speed
exit 0
