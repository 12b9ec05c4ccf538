# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Benchmark: seconds per training step of every head trainer (and the segmenter's), for docs/training.md.

Why this script exists: docs/training.md gives the expected wall time of an epoch on the measured hardware.
Each trainer is built on a few synthetic frames, one warm-up step runs, then ``--steps`` timed steps; the
epoch estimate multiplies the mean step by the steps of an epoch of ``--epoch-frames`` frames (2975 =
Cityscapes train). A step's cost depends on the frame size and batch, not on where the frames come from.

Usage: ``python bench/bench_training.py [--heads rpl obsnet dicnet nflowjs segmenter] [--steps 3]
[--height 256] [--width 512] [--batch-size 8] [--device cpu] [--json out.json]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time

import torch

from ood_seg_node.training.common import HeadTrainingConfig
from ood_seg_node.training.segmenter import SegmenterTrainer, SegmenterTrainingConfig
from ood_seg_node.training.trainers import TRAINERS


def build(name: str, args: argparse.Namespace):
    shared = dict(sequences=1, frames_per_sequence=args.batch_size * (args.steps + 1), val_sequences=1,
                  batch_size=args.batch_size, height=args.height, width=args.width, epochs=1, device=args.device)
    if name == "segmenter":
        return SegmenterTrainer(SegmenterTrainingConfig(**shared))
    trainer_class = TRAINERS.get(name)
    return trainer_class(HeadTrainingConfig(head=name, **shared), trainer_class.options_class())


def seconds_per_step(name: str, args: argparse.Namespace) -> float:
    trainer = build(name, args)
    batches = iter(trainer.epoch())
    trainer.step(next(batches))  # warm-up: allocations, the CPU fast path's first trace
    started = time.perf_counter()
    for batch in itertools.islice(batches, args.steps):
        trainer.step(batch)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="+", default=["rpl", "obsnet", "dicnet", "nflowjs", "segmenter"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epoch-frames", type=int, default=2975)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    steps_per_epoch = -(-args.epoch_frames // args.batch_size)
    rows = {}
    for name in args.heads:
        step = seconds_per_step(name, args)
        rows[name] = {"s_per_step": step, "epoch_min": step * steps_per_epoch / 60}
        print(f"{name:10s} {step:7.2f} s/step  ~{rows[name]['epoch_min']:7.1f} min per epoch of "
              f"{args.epoch_frames} frames ({args.height}x{args.width}, batch {args.batch_size}, {args.device})")
    if args.json:
        machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                   "torch": torch.__version__}
        with open(args.json, "w") as handle:
            json.dump({"config": vars(args), "machine": machine, "heads": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
