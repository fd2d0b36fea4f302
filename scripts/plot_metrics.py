#!/usr/bin/python3
"""Draws the loss curves of a training run from its metrics file into a PNG.

usage: scripts/plot_metrics.py runs/tiny/metrics.jsonl [out.png]

Training loss per logged step and validation loss per eval, against tokens seen (bottom axis) and
steps. Needs matplotlib (Debian: apt-get install python3-matplotlib).
"""
import json
import sys


def read_metrics(path):
    train, val = [], []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"plot_metrics: {path}:{number} is not JSON ({e}): is this a metrics.jsonl?")
            if "val_loss" in record:
                val.append((record["step"], record["val_loss"]))
            elif "loss" in record:
                train.append((record["step"], record["loss"]))
    # A resumed run appends steps it had already logged: keep the latest value of each step.
    return sorted(dict(train).items()), sorted(dict(val).items())


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    path = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else path.rsplit(".", 1)[0] + ".png"
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_metrics: matplotlib is missing: apt-get install python3-matplotlib")
    try:
        train, val = read_metrics(path)
    except OSError as e:
        sys.exit(f"plot_metrics: cannot read {path}: {e.strerror}")
    if not train:
        sys.exit(f"plot_metrics: {path} holds no training steps yet")
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.plot(*zip(*train), label="train loss", linewidth=1)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(path)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(out)


if __name__ == "__main__":
    main()
