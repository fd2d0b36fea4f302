#!/usr/bin/env python3
"""Checks a `mamba export` folder in transformers: MambaForCausalLM.from_pretrained loads it, its
validation loss equals `mamba eval`'s, and its greedy continuation equals `mamba generate`'s.

usage: scripts/gpu/check_export.py HF_DIR VAL_SHARD --eval-json FILE --generated FILE
           --prompt TEXT --tokens N --batches B --micro-batch M --seq-len L

VAL_SHARD is the first validation shard; the loss is taken, as `mamba eval` takes it, over the
first B x M windows of L + 1 tokens, in order. Exits non-zero when the losses differ by more
than 1e-5 or the texts differ. Needs torch, transformers and h5py (on the GPU machine).
"""
import argparse
import json
import sys

import h5py
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer, MambaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("hf_dir")
    p.add_argument("val_shard")
    p.add_argument("--eval-json", required=True)
    p.add_argument("--generated", required=True)
    p.add_argument("--prompt", required=True)
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--batches", type=int, required=True)
    p.add_argument("--micro-batch", type=int, required=True)
    p.add_argument("--seq-len", type=int, required=True)
    a = p.parse_args()

    model = MambaForCausalLM.from_pretrained(a.hf_dir, torch_dtype=torch.float32).cuda().eval()
    L, rows = a.seq_len, a.batches * a.micro_batch
    with h5py.File(a.val_shard, "r") as f:
        tokens = torch.tensor(f["tokens"][: rows * L + 1].astype("int64"))
    windows = torch.stack([tokens[i * L: i * L + L + 1] for i in range(rows)]).cuda()
    losses = []
    with torch.no_grad():
        for b in range(a.batches):
            batch = windows[b * a.micro_batch: (b + 1) * a.micro_batch]
            logits = model(batch[:, :-1]).logits.float()
            losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                          batch[:, 1:].reshape(-1)).item())
    hf_loss = sum(losses) / len(losses)
    ours = json.load(open(a.eval_json))["val_loss"]
    print(f"validation loss: transformers {hf_loss:.8f}, mamba eval {ours:.8f}, "
          f"difference {abs(hf_loss - ours):.2e}")

    tok = AutoTokenizer.from_pretrained(a.hf_dir)
    ids = tok(a.prompt, return_tensors="pt").input_ids.cuda()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=a.tokens, do_sample=False)
    hf_text = a.prompt + tok.decode(out[0, ids.shape[1]:])
    our_text = open(a.generated).read().rstrip("\n")
    print(f"transformers greedy: {hf_text!r}\nmamba generate:      {our_text!r}")

    ok = abs(hf_loss - ours) <= 1e-5 and hf_text == our_text
    print("MATCH" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
