#!/usr/bin/env bash
# The benchmarks' flags reach what they measure: each run's JSON must show the setting asked for
# (and --profile its extra line). Tiny shapes on the CPU.
#   tests/bench_flags.sh BUILD_DIR
set -euo pipefail
b=$1
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
fail() {
  echo "bench_flags: $1" >&2
  exit 1
}
expect() {  # expect OUTPUT TEXT
  grep -qF -- "$2" <<<"$1" || fail "missing '$2' in: $1"
}

out=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$b/bench_train" --model tiny --batch 1 \
  --seqlen 32 --steps 1 --shard-optimizer 1 --bf16-grads 0 --comm 0 --recompute 1)
expect "$out" '"shard_optimizer": 1'
expect "$out" '"peer_copies": 0'
expect "$out" '"tune_gemms": 0'
expect "$out" '"comm": 0'
expect "$out" '"recompute": 1'
expect "$out" '"keep_inputs": 0'
expect "$out" '"world": 2'
# On the CPU the peak is the process's peak resident memory: never 0.
peak=$(grep -oE '"peak_gib": [0-9.]+' <<<"$out" | awk '{print $2}')
awk -v p="${peak:-0}" 'BEGIN { exit !(p > 0) }' || fail "peak_gib is not positive in: $out"
# --tune-gemms 1 reaches train.tune_gemms, which the CPU refuses.
if refused=$("$b/bench_train" --model tiny --batch 1 --seqlen 32 --steps 1 --tune-gemms 1 2>&1); then
  fail "--tune-gemms 1 on the CPU was accepted: $refused"
fi
expect "$refused" 'train.tune_gemms = true'
# --peer-copies 1 reaches dist.peer_copies, which the CPU refuses too.
if refused=$("$b/bench_train" --model tiny --batch 1 --seqlen 32 --steps 1 --peer-copies 1 2>&1); then
  fail "--peer-copies 1 on the CPU was accepted: $refused"
fi
expect "$refused" 'dist.peer_copies = true'
# --profile-ops: one step's ops, each once per layer or once per step, and their sum. With
# --keep-inputs 1 backward rebuilds no layer's conv output (and so runs no conv forward).
for keep in 0 1; do
  out=$("$b/bench_train" --model tiny --batch 1 --seqlen 32 --steps 1 --profile-ops 1 \
    --keep-inputs $keep)
  expect "$out" "\"keep_inputs\": $keep"
  python3 - "$out" $keep <<'PY' || fail "--profile-ops: $out"
import json, sys
r, keep = json.loads(sys.argv[1]), int(sys.argv[2])
calls = {o["op"].split()[0]: o["calls"] for o in r["ops"]}
layers = calls["selective_scan_forward"]
assert layers >= 1 and calls["selective_scan_backward"] == layers, calls
assert calls["conv1d_silu_forward"] == (1 if keep else 2) * layers, calls
assert calls["adamw_step"] == 1 and calls["lm_head_loss_backward"] == 1, calls
total = sum(o["ms_per_step"] for o in r["ops"])
assert r["ops_ms_per_step"] > 0 and abs(total - r["ops_ms_per_step"]) <= 1e-3 * len(r["ops"]), r
PY
done
out=$(MAMBA_TEST_RANKS_PER_NODE=1 mpirun --allow-run-as-root --oversubscribe -np 2 \
  -x MAMBA_TEST_RANKS_PER_NODE "$b/bench_train" --model tiny --batch 1 --seqlen 32 --steps 1 \
  --hierarchical 1)
expect "$out" '"hierarchical": 1'

out=$(mpirun --allow-run-as-root --oversubscribe -np 2 "$b/bench_checkpoint" --model tiny \
  --device cpu --saves 1 --between 1 --async false --dir "$scratch/ckpt" dist.shard_optimizer=true)
expect "$out" '"world": 2'
expect "$out" '"async": false'
expect "$out" '(written by 2 ranks)'

out=$("$b/bench_generate" --model tiny --batch 2 --prompt 8 --tokens 4 --repeats 1 --graphs 0 \
  --profile 1)
expect "$out" '"graphs": 0'
expect "$out" '"batch": 2'
expect "$out" '"new_tokens": 4'
expect "$out" '"bench": "generate_profile"'

out=$("$b/bench_loader" --dir "$scratch/corpus" --shards 20 --shard-tokens 10000 --batches 50 \
  --procs 2 --seqlen 32 --batch 4)
expect "$out" '"procs": 2'
expect "$out" '"shards": 20'
expect "$out" '"seqlen": 32'
# bench_scan (built with CUDA) checks --profile's shape index before it looks for a GPU.
if [ -x "$b/bench_scan" ]; then
  for bad in 10 -1 x 2x ""; do
    if refused=$("$b/bench_scan" --profile "$bad" 2>&1); then
      fail "bench_scan --profile '$bad' was accepted: $refused"
    fi
    expect "$refused" "--profile $bad: give a shape index from 0 to 9"
  done
fi
echo "bench_flags: ok"
