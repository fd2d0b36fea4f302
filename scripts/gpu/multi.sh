#!/usr/bin/env bash
# On a GPU machine with 2 GPUs (with .deps/ and data/demo/ in the tree): NCCL data parallelism
# checks and scaling. Logs and JSON go to $OUT.
#   1. 2 ranks x micro batch 4 == 1 rank x micro batch 8 (bf16 tolerance), losses and weights;
#   2. a 2-GPU checkpoint resumed on 1 GPU, and a 1-GPU checkpoint resumed on 2, match the
#      uninterrupted runs;
#   3. scaling efficiency (tokens/s on 2 GPUs over 2 x tokens/s on 1) for 130M and 1.4B at the
#      bench_train settings, and the step time without communication (how much overlap hides).
#   bash scripts/gpu/multi.sh [--no-scaling]
source "$(dirname "$0")/common.sh"
mpi=$on_two_gpus
m=build-gpu/mamba
common=(train.device=cuda train.precision=bf16 train.grad_accum=null train.global_batch=8 train.steps=40
  optim.warmup=5 log.interval=1 log.eval_interval=0 log.sample_interval=0 checkpoint.interval=20
  checkpoint.resume=auto)
quiet() { grep -vE "^  |^[a-z_]+:$|^#" | tail -3; }

two_vs_one() {
  $m train configs/tiny.yaml "${common[@]}" train.micro_batch=8 checkpoint.dir="$out/one" | quiet
  $mpi $m train configs/tiny.yaml "${common[@]}" train.micro_batch=4 checkpoint.dir="$out/two" | quiet
  python3 scripts/compare_runs.py "$out/one/metrics.jsonl" "$out/two/metrics.jsonl" \
    "$out/one/step_00000040" "$out/two/step_00000040" --loss-tol 2e-2 --weight-tol 2e-2
}

resume_across_counts() {
  mkdir -p "$out/two_to_one" "$out/one_to_two"
  cp -r "$out/two/step_00000020" "$out/two_to_one/"
  cp -r "$out/one/step_00000020" "$out/one_to_two/"
  $m train configs/tiny.yaml "${common[@]}" train.micro_batch=8 checkpoint.dir="$out/two_to_one" |
    quiet
  $mpi $m train configs/tiny.yaml "${common[@]}" train.micro_batch=4 \
    checkpoint.dir="$out/one_to_two" | quiet
  python3 scripts/compare_runs.py "$out/two/metrics.jsonl" "$out/two_to_one/metrics.jsonl" \
    "$out/two/step_00000040" "$out/two_to_one/step_00000040" --loss-tol 2e-2 --weight-tol 2e-2
  python3 scripts/compare_runs.py "$out/one/metrics.jsonl" "$out/one_to_two/metrics.jsonl" \
    "$out/one/step_00000040" "$out/one_to_two/step_00000040" --loss-tol 2e-2 --weight-tol 2e-2
}

scaling() {
  local b=build-gpu/bench_train
  : >"$out/scaling.jsonl"
  for shape in "130m 16 2048" "1.4b 4 2048"; do
    read -r model batch seqlen <<<"$shape"
    local args=(--device cuda --model "$model" --batch "$batch" --seqlen "$seqlen" --steps 8)
    $b "${args[@]}" | tee -a "$out/scaling.jsonl"
    $mpi $b "${args[@]}" | tee -a "$out/scaling.jsonl"
    $mpi $b "${args[@]}" --comm 0 | tee -a "$out/scaling.jsonl"
  done
}

check "build" build_gpu mamba bench_train
check "two ranks == one rank with twice the micro batch" two_vs_one
check "resume across GPU counts" resume_across_counts
[ "${1:-}" = "--no-scaling" ] || check "scaling" scaling
exit 0
