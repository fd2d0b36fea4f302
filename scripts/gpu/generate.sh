#!/usr/bin/env bash
# On the GPU machine (with .deps/ from scripts/gpu/deps.sh in the tree): builds the tests and
# bench_generate, runs the recurrent-mode tests (the CUDA step ops against the CPU's, and
# step-by-step logits against the full forward on the GPU; any skip fails), then times generation
# (prompt 128, 256 new tokens) for 130M and 1.4B at batch 1 and 16, and 130M at batch 1 without
# CUDA graphs, with a per-op time breakdown of one decode step ($OUT/decode_profile.jsonl). Where
# the reference (mamba_ssm, built from source) is importable, its CUDA-graph decoding is timed at
# the same shapes. JSON lines go to JSONL (default $OUT/bench_generate.jsonl), logs to $OUT.
#   bash scripts/gpu/generate.sh [JSONL]
source "$(dirname "$0")/common.sh"
jsonl=${1:-$out/bench_generate.jsonl}
mkdir -p "$(dirname "$jsonl")"
b=build-gpu
shapes=("130m 1" "130m 16" "1.4b 1" "1.4b 16")

# Each shape with the decode step replayed as a CUDA graph, and 130M at batch 1 also without
# (kernels launched one by one), to show what the graph gains. The graph runs also time each op
# of one decode step (--profile 1): those lines go to decode_profile.jsonl.
bench_ours() {
  : >"$jsonl"
  : >"$out/decode_profile.jsonl"
  for shape in "${shapes[@]}" "130m 1 0"; do
    read -r model batch graphs <<<"$shape"
    timeout 300 $b/bench_generate --device cuda --model "$model" --batch "$batch" \
      --prompt 128 --tokens 256 --graphs "${graphs:-1}" --profile "${graphs:-1}" \
      >"$out/bench_lines.json" || return 1
    grep -v generate_profile "$out/bench_lines.json" | tee -a "$jsonl"
    grep generate_profile "$out/bench_lines.json" | tee -a "$out/decode_profile.jsonl" || true
  done
}

# Status 3 from the script: the reference is not importable here, which skips it.
bench_reference() {
  for shape in "${shapes[@]}"; do
    read -r model batch <<<"$shape"
    local status=0
    timeout 600 python3 bench/bench_generate_reference.py --model "$model" --batch "$batch" \
      --prompt 128 --tokens 256 >"$out/reference_line.json" || status=$?
    if [ $status -eq 3 ]; then
      echo "the reference (mamba_ssm) is not importable: not timed (build it, then set PYTHONPATH)"
      return 0
    fi
    [ $status -eq 0 ] || return $status
    tee -a "$jsonl" <"$out/reference_line.json"
  done
}

nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv
check "build" build_gpu mamba_tests mamba_cuda_tests bench_generate
check "recurrent step ops and few-row linear: CUDA = CPU, none skipped" scripts/gpu/cuda_tests.sh \
  $b/mamba_cuda_tests "$out/recurrent_ops.log" \
  --gtest_filter='*RecurrentSteps*:*ArgmaxRows*:*StepRecorder*:*LinearFewRows*'
check "recurrent logits = full forward (CPU and GPU), none skipped" scripts/gpu/cuda_tests.sh \
  $b/mamba_tests "$out/generation_tests.log" --gtest_filter='Generation.*'
check "bench_generate 130M / 1.4B, batch 1 / 16" bench_ours
check "reference decoding, same shapes" bench_reference
exit 0
