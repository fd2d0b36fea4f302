#!/usr/bin/env bash
# On the GPU machine (with .deps/ from scripts/gpu/deps.sh and data/demo/ from
# scripts/fetch_demo_data.sh in the tree): builds everything, runs the CUDA tests (any skip fails),
# the golden checks on the GPU, the benchmarks of docs/design.md section 3 and a short GPU
# training run. Logs and JSON go to $OUT.
#   bash scripts/gpu/all.sh [tests] [golden] [scan] [train] [run]     (default: all of them)
source "$(dirname "$0")/common.sh"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests golden scan train run)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
b=build-gpu

bench_train() {
  : >"$out/bench_train.jsonl"
  # model batch seqlen recompute keep_inputs
  for shape in "130m 16 2048 0 0" "370m 8 2048 0 0" "1.4b 4 2048 0 0" "130m 1 65536 1 0" \
    "1.4b 1 16384 1 0" "130m 1 65536 0 0" "1.4b 1 16384 0 0" "130m 16 2048 1 0" \
    "130m 16 2048 0 1" "1.4b 4 2048 0 1"; do
    read -r model batch seqlen recompute keep <<<"$shape"
    timeout 300 $b/bench_train --device cuda --model "$model" --batch "$batch" \
      --seqlen "$seqlen" --recompute "$recompute" --keep-inputs "$keep" --steps 5 2>&1 |
      tee -a "$out/bench_train.jsonl"
  done
}

train_run() {
  $b/mamba train configs/tiny.yaml train.device=cuda train.steps=300 checkpoint.dir="$out/tiny" \
    checkpoint.resume=none log.sample_interval=300 2>&1 | grep -vE "^  |^[a-z_]+:$|^#" |
    tee "$out/tiny_run.log" | tail -12
}

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv
check "build" build_gpu
want tests && check "CUDA tests, none skipped" scripts/gpu/cuda_tests.sh $b/mamba_cuda_tests \
  "$out/cuda_tests.log"
want golden && check "golden files on the GPU" golden_on_gpu tests/data/*.safetensors
want scan && check "bench_scan" bash -c "set -o pipefail; $b/bench_scan | tee $out/bench_scan.jsonl"
want train && check "bench_train" bench_train
want run && check "tiny training run" train_run
exit 0
