# Sourced by the GPU-machine scripts of this folder. It sets $out (logs and JSON; $OUT or
# /tmp/gpu-out), builds the CUDA tree in build-gpu/ (`build_gpu [targets...]`, none: everything)
# and runs checks (`check NAME COMMAND...`): each runs with `set -e`, the script stops at the
# first that fails, and a summary of the checks is printed however the script ends.
set -uo pipefail
export NCCL_NVLS_ENABLE=0
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
summary=()

print_summary() {
  echo "== summary ($out)"
  for line in "${summary[@]}"; do echo "  $line"; done
}
trap print_summary EXIT

check() {
  local name=$1
  shift
  echo "== $name"
  (
    set -e
    "$@"
  )
  local status=$?
  if [ $status -ne 0 ]; then
    summary+=("FAILED  $name")
    exit 1
  fi
  summary+=("ok      $name")
}

build_gpu() {
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  # A machine reused between runs keeps build-gpu/, and the copied tree can have older timestamps
  # than the objects built there: touch the sources so that nothing stale is reused.
  find src tests bench -type f -exec touch {} +
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B build-gpu "${generator[@]}" -DMAMBA_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
    >"$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; return 1; }
  cmake --build build-gpu -j"$(nproc)" "${targets[@]}" >"$out/build.log" 2>&1 ||
    { grep -E "error" "$out/build.log" | head -30; return 1; }
}

# Trains the 130M model on the demo corpus, as the loss comparisons do, printing its step and eval
# lines: `train_demo_130m LAUNCHER DIR [key=value...]` (LAUNCHER "" for one process).
train_demo_130m() {
  local launcher=$1 dir=$2
  shift 2
  $launcher build-gpu/mamba train configs/mamba-130m.yaml model.vocab_size=50257 \
    "data.train=data/demo/train-*.h5" "data.val=data/demo/val-*.h5" \
    data.tokenizer=data/demo/tokenizer/encoder.json train.tokens=null optim.lr=1e-3 \
    log.sample_interval=0 checkpoint.resume=none checkpoint.dir="$dir" "$@" |
    grep -E "^step|^eval|^optimizer"
}

# One process per GPU on a machine with two.
on_two_gpus="mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE -x OMP_NUM_THREADS=4"

# bench_train on two GPUs for 130M 16 x 2048 and 1.4B 4 x 2048 per GPU, each with FLAG 0 and 1,
# appending the JSON to FILE: `bench_flag_both_ways FLAG FILE [key=value...]`.
bench_flag_both_ways() {
  local flag=$1 file=$2
  shift 2
  for shape in "130m 16" "1.4b 4"; do
    read -r model batch <<<"$shape"
    for value in 0 1; do
      $on_two_gpus build-gpu/bench_train --device cuda --model "$model" --batch "$batch" \
        --seqlen 2048 --steps 10 "$flag" "$value" "$@" | tee -a "$file"
    done
  done
}

# The 130M demo run for 200 steps on two GPUs with the config KEY false and true (runs in
# $out/PREFIX_false and $out/PREFIX_true), then their losses compared:
# `loss_both_ways KEY PREFIX [key=value...]`.
loss_both_ways() {
  local key=$1 prefix=$2
  shift 2
  for value in false true; do
    echo "-- $key=$value"
    train_demo_130m "$on_two_gpus" "$out/${prefix}_$value" train.micro_batch=8 \
      train.global_batch=16 train.steps=200 optim.warmup=20 log.interval=20 \
      log.eval_interval=100 "$key=$value" "$@"
  done
  python3 scripts/compare_runs.py "$out/${prefix}_false/metrics.jsonl" \
    "$out/${prefix}_true/metrics.jsonl" --loss-tol 5e-2
}

# mamba check-golden on the GPU, fp32 and bf16, for each file given, a log each in $out; fails
# when any check does: `golden_on_gpu FILE...`.
golden_on_gpu() {
  local failed=0
  for f in "$@"; do
    for p in fp32 bf16; do
      local log
      log="$out/golden_$(basename "$f" .safetensors)_$p.log"
      printf '%s %s: ' "$(basename "$f")" "$p"
      build-gpu/mamba check-golden "$f" --device cuda --precision $p >"$log" 2>&1 || failed=1
      tail -1 "$log"
    done
  done
  return $failed
}
