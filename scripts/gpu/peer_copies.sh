#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ in the tree): dist.peer_copies (gradients averaged by
# the copy engines) against NCCL. Correctness: the reducer against the mean bit for bit, and a
# training run against NCCL's (PeerCopies.*). Speed: bench_train on one GPU, then on two with
# NCCL and with peer copies, in turns, for 130M 16 x 2048 and 1.4B 4 x 2048 per GPU; one JSON
# line per run in $OUT/peer_copies.jsonl.
source "$(dirname "$0")/common.sh"

tests() {
  build-gpu/mamba_tests --gtest_filter='PeerCopies.*' | tee "$out/peer_tests.log" | tail -3
  ! grep -q "SKIPPED" "$out/peer_tests.log"
}

speed() {
  local b=build-gpu/bench_train file=$out/peer_copies.jsonl
  for shape in "130m 16" "1.4b 4"; do
    read -r model batch <<<"$shape"
    local args=(--device cuda --model "$model" --batch "$batch" --seqlen 2048 --steps 10)
    for turn in 1 2; do
      $b "${args[@]}" | tee -a "$file"
      $on_two_gpus $b "${args[@]}" --peer-copies 0 | tee -a "$file"
      $on_two_gpus $b "${args[@]}" --peer-copies 1 | tee -a "$file"
    done
  done
}

nvidia-smi -L
check "build" build_gpu mamba mamba_tests bench_train peer_reduce_check
check "peer copies: reducer and training run" tests
check "speed: one GPU, two with NCCL, two with peer copies" speed
exit 0
