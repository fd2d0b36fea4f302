#!/usr/bin/env python3
"""Compares two training runs: the losses in their metrics files and the weights of a checkpoint.

usage: scripts/compare_runs.py METRICS_A METRICS_B [CKPT_A CKPT_B] [--loss-tol X] [--weight-tol Y]

Losses are compared step by step (absolute difference), weights by norm-wise relative error over
the whole model. Exit 0 when both are within tolerance, 1 otherwise. Needs numpy.
"""
import argparse
import json
import struct
import sys

import numpy as np


def losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "loss" in r:
                out[r["step"]] = r["loss"]
    return out


def weights(checkpoint):
    with open(checkpoint + "/model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    parts = []
    for name in sorted(k for k in header if k != "__metadata__"):
        b, e = header[name]["data_offsets"]
        parts.append(np.frombuffer(data[b:e], dtype=np.float32).astype(np.float64))
    return np.concatenate(parts)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="+")
    p.add_argument("--loss-tol", type=float, default=1e-5)
    p.add_argument("--weight-tol", type=float, default=1e-6)
    a = p.parse_args()
    la, lb = losses(a.paths[0]), losses(a.paths[1])
    steps = sorted(set(la) & set(lb))
    if not steps:
        sys.exit("compare_runs: the metrics files share no steps")
    worst = max(abs(la[s] - lb[s]) for s in steps)
    ok = worst <= a.loss_tol
    print(f"losses: {len(steps)} common steps, max |diff| {worst:.3e} (tol {a.loss_tol:.0e})")
    if len(a.paths) == 4:
        wa, wb = weights(a.paths[2]), weights(a.paths[3])
        rel = np.linalg.norm(wa - wb) / np.linalg.norm(wb)
        ok = ok and rel <= a.weight_tol
        print(f"weights: rel err {rel:.3e} (tol {a.weight_tol:.0e})")
    print("MATCH" if ok else "DIFFER")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
