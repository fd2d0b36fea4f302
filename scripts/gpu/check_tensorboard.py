#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own reader and prints its scalars.

usage: scripts/gpu/check_tensorboard.py EVENT_DIR [--metrics METRICS_JSONL] [--no-val]

EVENT_DIR is <checkpoint.dir>/tb of a run with log.tensorboard=true. Exits non-zero when a tag
that every run writes is missing (val/loss too, unless --no-val), or, with --metrics, when the
training and validation losses differ from the run's metrics file by more than float rounding.
Needs the tensorboard Python package (on the GPU machine).
"""
import argparse
import json
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TRAIN_TAGS = ["train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/mem_gib",
              "train/skipped_steps"]


def metrics_losses(path):
    train, val = {}, {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if "val_loss" in record:
                val[record["step"]] = record["val_loss"]
            elif "loss" in record and not record.get("skipped", False):
                train[record["step"]] = record["loss"]
    return {"train/loss": train, "val/loss": val}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("event_dir")
    parser.add_argument("--metrics", help="the run's metrics.jsonl, to compare the losses with")
    parser.add_argument("--no-val", action="store_true", help="the run had no evals")
    args = parser.parse_args()

    accumulator = EventAccumulator(args.event_dir, size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    problems = []
    for tag in sorted(tags):
        points = accumulator.Scalars(tag)
        print(f"{tag}: {len(points)} points, step {points[0].step} = {points[0].value:.6g} .. "
              f"step {points[-1].step} = {points[-1].value:.6g}")
    wanted = TRAIN_TAGS + ([] if args.no_val else ["val/loss"])
    problems += [f"missing tag {tag}" for tag in wanted if tag not in tags]

    if args.metrics:
        for tag, expected in metrics_losses(args.metrics).items():
            if tag not in tags:
                continue
            got = {p.step: p.value for p in accumulator.Scalars(tag)}
            if sorted(got) != sorted(expected):
                problems.append(f"{tag}: steps {sorted(got)} in the event files, "
                                f"{sorted(expected)} in {args.metrics}")
                continue
            for step, value in expected.items():
                if not math.isclose(got[step], value, rel_tol=1e-6, abs_tol=1e-6):
                    problems.append(f"{tag} at step {step}: {got[step]} vs {value}")
            print(f"{tag}: all {len(expected)} points match {args.metrics}")

    for problem in problems:
        print(f"check_tensorboard: {args.event_dir}: {problem}", file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
