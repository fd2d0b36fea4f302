#!/usr/bin/env bash
# On the GPU machine (one GPU is enough): the one-launch AdamW that writes the bf16 compute copy,
# and the LM head with bf16 logits (docs/performance.md, "Speed, round two"). Builds, runs the
# CUDA-vs-CPU tests (any skip fails) and the optimizer / ZeRO-1 tests, the per-op timings at 130M
# shapes, bench_train at the three shapes of docs/performance.md, and last the golden checks on
# the GPU in both precisions (bf16 logits change the bf16 numbers; their largest errors are
# shown). Logs go to $OUT; the bench_train lines (JSON, with the per-op profile of the step:
# --profile-ops 1) to $OUT/speed.jsonl.
source "$(dirname "$0")/common.sh"
b=build-gpu

golden() {
  local failed=0
  golden_on_gpu tests/data/mamba_*.safetensors || failed=1
  grep -hE "loss|after\." "$out"/golden_*_bf16.log | sort -k4 -g | tail -5
  return $failed
}

op_timings() {
  $b/mamba_cuda_tests --gtest_also_run_disabled_tests --gtest_filter='CudaBackendTiming.*' \
    >"$out/op_timings.log" 2>&1
  grep -E "adamw|lm_head|peak" "$out/op_timings.log"
}

bench() {
  : >"$out/speed.jsonl"
  for shape in "130m 16 2048" "370m 8 2048" "1.4b 4 2048"; do
    read -r model batch seqlen <<<"$shape"
    timeout 300 $b/bench_train --device cuda --model "$model" --batch "$batch" \
      --seqlen "$seqlen" --steps 10 --profile-ops 1 | tee -a "$out/speed.jsonl"
  done
}

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv
check "build" build_gpu mamba bench_train mamba_cuda_tests mamba_tests
check "CUDA vs CPU tests, none skipped" scripts/gpu/cuda_tests.sh $b/mamba_cuda_tests \
  "$out/cuda_tests.log" --gtest_filter='*CudaVsCpu.*'
check "optimizer and ZeRO-1 tests" bash -c "set -o pipefail; $b/mamba_tests \
  --gtest_filter='AdamWUpdate.*:ShardedAdamW.*:ShardedTraining.*' 2>&1 | tail -5"
check "op timings at 130M" op_timings
check "bench_train 130m 16x2048, 370m 8x2048, 1.4b 4x2048" bench
check "golden files on the GPU" golden
exit 0
