#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ and data/demo/ in the tree): dist.bf16_grads against
# fp32 gradient communication, for speed (bench_train, 130M and 1.4B) and for loss (130M, 200
# steps on the demo corpus, each run with the same seed and data); also the CUDA tests and the
# up-front check of the CUDA backend's shape limits. Logs and JSON go to $OUT.
source "$(dirname "$0")/common.sh"
mpi="mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE -x OMP_NUM_THREADS=4"

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
  for bf16 in false true; do
    echo "-- dist.bf16_grads=$bf16"
    train_demo_130m "$mpi" "$out/grads_$bf16" train.micro_batch=8 train.global_batch=16 \
      train.steps=200 optim.warmup=20 log.interval=20 log.eval_interval=100 \
      checkpoint.interval=0 dist.bf16_grads=$bf16
  done
  python3 scripts/compare_runs.py "$out/grads_false/metrics.jsonl" \
    "$out/grads_true/metrics.jsonl" --loss-tol 5e-2
}

nvidia-smi -L
check "build" build_gpu mamba bench_train mamba_cuda_tests
check "CUDA tests, none skipped" scripts/gpu/cuda_tests.sh build-gpu/mamba_cuda_tests \
  "$out/cuda_tests.log"
check "CUDA shape limits checked before any work" limits
check "speed: fp32 vs bf16 gradient communication" speed
check "loss: 130M, 200 steps, 2 GPUs, fp32 vs bf16 gradient communication" loss
exit 0
