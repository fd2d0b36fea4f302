#!/usr/bin/env bash
# On the GPU machine (with .deps/ from scripts/gpu/deps.sh and data/demo/ in the tree): a short
# fp32 GPU run of configs/tiny.yaml with TensorBoard events, then its checkpoint exported and
# loaded in transformers (same validation loss as `mamba eval` to 1e-5, same greedy text as
# `mamba generate --temperature 0`), and the events read with TensorBoard's own reader.
source "$(dirname "$0")/common.sh"
m=build-gpu/mamba
run=$out/interop
prompt="It is a truth universally acknowledged"

train_run() {
  $m train configs/tiny.yaml train.device=cuda train.precision=fp32 train.steps=200 \
    log.tensorboard=true log.sample_interval=0 checkpoint.dir="$run" checkpoint.resume=none |
    grep -E "^step 200|^eval step 200"
}

export_check() {
  $m export "$run" "$out/hf"
  $m eval "$run" --batches 4 | tee "$out/eval.json"
  $m generate "$run" --prompt "$prompt" --tokens 32 --temperature 0 | tee "$out/generated.txt"
  python3 scripts/gpu/check_export.py "$out/hf" data/demo/val-0000.h5 --eval-json "$out/eval.json" \
    --generated "$out/generated.txt" --prompt "$prompt" --tokens 32 --batches 4 \
    --micro-batch 8 --seq-len 128
}

check "build" build_gpu mamba
check "fp32 GPU run with TensorBoard events" train_run
check "export -> transformers: same loss and greedy text" export_check
check "TensorBoard reads the events" python3 scripts/gpu/check_tensorboard.py "$run/tb" \
  --metrics "$run/metrics.jsonl"
exit 0
