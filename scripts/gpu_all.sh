#!/usr/bin/env bash
# Run on the GPU machine (device tool, carry [".deps", "data/demo"] after scripts/gpu_deps.sh and
# scripts/fetch_demo_data.sh here): builds everything, runs the CUDA tests, the golden checks on
# the GPU, the benchmarks of DESIGN §3 and a short GPU training run. Logs and JSON go to $OUT.
#   bash scripts/gpu_all.sh [tests] [golden] [scan] [train] [run]     (default: all of them)
set -uo pipefail
export NCCL_NVLS_ENABLE=0
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests golden scan train run)
want() { [[ " ${parts[*]} " == *" $1 "* ]]; }
status=0  # non-zero when the CUDA tests fail or skip

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv
source scripts/gpu_build.sh "$out"
b=build-gpu

if want tests; then
  scripts/gpu/cuda_tests.sh $b/mamba_cuda_tests "$out/cuda_tests.log" || status=1
fi
if want golden; then
  for f in tests/data/*.safetensors; do
    for p in fp32 bf16; do
      printf '%s %s: ' "$(basename "$f")" "$p"
      $b/mamba check-golden "$f" --device cuda --precision $p >"$out/golden_$(basename "$f" .safetensors)_$p.log" 2>&1
      tail -1 "$out/golden_$(basename "$f" .safetensors)_$p.log"
    done
  done
fi
if want scan; then
  $b/bench_scan | tee "$out/bench_scan.jsonl"
fi
if want train; then
  : >"$out/bench_train.jsonl"
  for shape in "130m 16 2048 0" "370m 8 2048 0" "1.4b 4 2048 0" "130m 1 65536 1" "1.4b 1 16384 1" \
    "130m 1 65536 0" "1.4b 1 16384 0" "130m 16 2048 1"; do
    read -r model batch seqlen recompute <<<"$shape"
    timeout 300 $b/bench_train --device cuda --model "$model" --batch "$batch" --seqlen "$seqlen" \
      --recompute "$recompute" --steps 5 2>&1 | tee -a "$out/bench_train.jsonl"
  done
fi
if want run; then
  $b/mamba train configs/tiny.yaml train.device=cuda train.steps=300 checkpoint.dir="$out/tiny" \
    checkpoint.resume=none log.sample_interval=300 2>&1 | grep -vE "^  |^[a-z_]+:$|^#" |
    tee "$out/tiny_run.log" | tail -12
fi
exit $status
