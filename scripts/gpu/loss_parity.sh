#!/usr/bin/env bash
# On the GPU machine (with .deps/ and data/demo/ in the tree): does the bf16 path train as well as
# fp32? The 130M model, 300 steps at lr 1e-3 on the demo corpus, once in bf16 and once in fp32,
# same seed and data; the check passes when the bf16 run's final validation loss is within 0.02
# of the fp32 run's. Prints one JSON line; logs and metrics go to $OUT.
source "$(dirname "$0")/common.sh"

train() {
  train_demo_130m "" "$out/parity_$1" train.device=cuda train.precision="$1" \
    train.micro_batch=8 train.global_batch=8 train.steps=300 optim.warmup=30 log.interval=50 \
    log.eval_interval=300 checkpoint.interval=0
}

compare() {
  python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
def final_val(precision):
    vals = [json.loads(l) for l in open(f"{out}/parity_{precision}/metrics.jsonl")]
    return [r["val_loss"] for r in vals if "val_loss" in r][-1]
bf16, fp32 = final_val("bf16"), final_val("fp32")
print(json.dumps({"check": "loss_parity", "model": "mamba-130m", "steps": 300, "lr": 1e-3,
                  "val_loss_bf16": round(bf16, 4), "val_loss_fp32": round(fp32, 4),
                  "difference": round(bf16 - fp32, 4), "tolerance": 0.02}))
sys.exit(0 if abs(bf16 - fp32) <= 0.02 else 1)
EOF
}

check "build" build_gpu mamba
check "130M, 300 steps, bf16" train bf16
check "130M, 300 steps, fp32" train fp32
check "bf16 final validation loss within 0.02 of fp32" compare
exit 0
