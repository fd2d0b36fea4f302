#!/usr/bin/env bash
# On the GPU machine (with .deps/ and data/demo/ in the tree): what checkpoints cost at 1.4B
# (bench_checkpoint: stall per save, write, load, start-up and the weights' initialisation, host
# memory), the training step's memory with the asynchronous writer's device snapshot, an exact
# resume of a GPU run whose checkpoints were written asynchronously, and a whole model
# initialised on the GPU bit-identically to the CPU. JSON lines go to $OUT/checkpoints.jsonl.
source "$(dirname "$0")/common.sh"
m=build-gpu/mamba

bench() {
  for async in true false; do
    build-gpu/bench_checkpoint --model 1.4b train.micro_batch=4 --async $async --saves 3 \
      --dir "$out/bench_ckpt" | tee -a "$out/checkpoints.jsonl"
  done
  build-gpu/bench_train --device cuda --model 1.4b --batch 4 --seqlen 2048 --steps 5 \
    checkpoint.async=false | tee -a "$out/checkpoints.jsonl"
}

resume() {
  local args=(train.device=cuda train.precision=bf16 train.steps=60 checkpoint.interval=20
    checkpoint.async=true log.interval=20 log.eval_interval=0 log.sample_interval=0)
  $m train configs/tiny.yaml "${args[@]}" checkpoint.dir="$out/straight" | grep -E "^step 60"
  $m train configs/tiny.yaml "${args[@]}" checkpoint.dir="$out/resumed" | grep -E "^step 60"
  rm -r "$out/resumed/step_00000060" "$out/resumed/step_00000040"
  $m train configs/tiny.yaml "${args[@]}" checkpoint.dir="$out/resumed" | grep -E "resumed|^step 60"
  cmp "$out/straight/step_00000060/model.safetensors" "$out/resumed/step_00000060/model.safetensors"
  cmp "$out/straight/step_00000060/optimizer.safetensors" \
    "$out/resumed/step_00000060/optimizer.safetensors"
  echo "asynchronous checkpoints on the GPU: the resumed run's step-60 files are byte-identical"
}

: >"$out/checkpoints.jsonl"
check "build" build_gpu mamba bench_checkpoint bench_train mamba_cuda_tests mamba_tests
check "CUDA tests, none skipped" scripts/gpu/cuda_tests.sh build-gpu/mamba_cuda_tests \
  "$out/cuda_tests.log"
check "initialisation: CPU and GPU bit-identical, none skipped" scripts/gpu/cuda_tests.sh \
  build-gpu/mamba_tests "$out/init_tests.log" \
  --gtest_filter='ModelInit.*:InitFill.*:ReproMath.*:CounterRng.*'
check "exact resume with asynchronous checkpoints" resume
check "bench_checkpoint 1.4B" bench
exit 0
