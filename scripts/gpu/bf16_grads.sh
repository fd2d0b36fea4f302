#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ and data/demo/ in the tree): dist.bf16_grads against
# fp32 gradient communication, for speed (bench_train, 130M and 1.4B) and for loss (130M, 200
# steps on the demo corpus, each run with the same seed and data); also the CUDA tests and the
# up-front check of the CUDA backend's shape limits. Logs and JSON go to $OUT.
source "$(dirname "$0")/common.sh"

limits() {
  if build-gpu/mamba train configs/tiny.yaml train.device=cuda model.d_state=8 \
    checkpoint.dir="$out/limits" >"$out/limits.log" 2>&1; then
    return 1
  fi
  tail -1 "$out/limits.log"
  grep -q "model.d_state = 8" "$out/limits.log"
}

speed() {
  bench_flag_both_ways --bf16-grads "$out/bf16_grads.jsonl"
}

loss() {
  loss_both_ways dist.bf16_grads grads checkpoint.interval=0
}

nvidia-smi -L
check "build" build_gpu mamba bench_train mamba_cuda_tests
check "CUDA tests, none skipped" scripts/gpu/cuda_tests.sh build-gpu/mamba_cuda_tests \
  "$out/cuda_tests.log"
check "CUDA shape limits checked before any work" limits
check "speed: fp32 vs bf16 gradient communication" speed
check "loss: 130M, 200 steps, 2 GPUs, fp32 vs bf16 gradient communication" loss
exit 0
