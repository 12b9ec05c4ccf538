# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Benchmark: streaming pixel metrics vs scikit-learn's exact computation, and flat memory.

Why this script exists: the README's performance section claims that StreamingOODMetrics is faster than
pooling every pixel for scikit-learn, agrees with it, and keeps its memory flat as frames accumulate. This
measures all three in one run on synthetic road-like frames (anomaly blobs, an ignored band) with
energy-like float32 scores (about -30..+5) and float32 probabilities crowding at 0 and 1.

Usage: ``python bench/bench_metrics.py [--frames 20] [--height 512] [--width 1024] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from tqdm import tqdm

from ood_seg_node.evaluation import StreamingOODMetrics

KINDS = ("energy", "probability")


def make_frame(rng: np.random.Generator, height: int, width: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame: label 0 road / 1 anomaly blobs / 255 top band, and a float32 score map."""
    label = np.zeros((height, width), np.uint8)
    label[: height // 4] = 255  # sky / outside the region of interest
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(height * 0.4, height * 0.9), rng.uniform(0, width)
        ry, rx = rng.uniform(5, height * 0.08), rng.uniform(5, width * 0.06)
        label[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = 1
    latent = rng.normal(0.0, 1.0, (height, width)) + 1.5 * (label == 1)
    if kind == "energy":
        score = -14.0 + 4.0 * latent
    else:
        score = 1.0 / (1.0 + np.exp(-(6.0 * latent - 9.0)))
    return score.astype(np.float32), label


def exact_metrics(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    label = np.concatenate([lab.ravel() for lab in labels])
    score = np.concatenate([s.ravel() for s in scores])
    valid = label != 255
    y, s = label[valid], score[valid]
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return {"ap": float(average_precision_score(y, s)), "auroc": float(roc_auc_score(y, s)),
            "fpr95": float(fpr[np.searchsorted(tpr, 0.95)])}


def compare(kind: str, frames: int, height: int, width: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    data = [make_frame(rng, height, width, kind)
            for _ in tqdm(range(frames), desc=f"{kind}: making frames", leave=False)]
    start = time.perf_counter()
    metrics = StreamingOODMetrics()
    for score, label in tqdm(data, desc=f"{kind}: streaming", leave=False):
        metrics.update(score, label)
    streaming = metrics.compute()
    t_stream = time.perf_counter() - start
    start = time.perf_counter()
    exact = exact_metrics([d[0] for d in data], [d[1] for d in data])
    t_exact = time.perf_counter() - start
    diff = {k: abs(streaming[k] - exact[k]) for k in exact}
    return {"kind": kind, "pixels": int(streaming["pixels_in"] + streaming["pixels_out"]),
            "streaming_s": t_stream, "sklearn_s": t_exact, "speedup": t_exact / t_stream,
            "streaming": {k: streaming[k] for k in exact}, "exact": exact, "abs_diff": diff,
            "max_abs_diff": max(diff.values())}


def memory(frames: int, height: int, width: int, seed: int) -> dict:
    """Internal array size, traced memory and the tracemalloc peak, after 10 frames and after `frames`.

    The frame's range drifts a little every update, so the grid keeps shifting and coarsening (the
    transient peak includes such regrids); what is held between updates must not grow.
    """
    rng = np.random.default_rng(seed)
    score, label = make_frame(rng, height, width, "energy")
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    metrics = StreamingOODMetrics()
    out, done = {}, 0
    for checkpoint in (10, frames):
        tracemalloc.reset_peak()
        for i in tqdm(range(done, checkpoint), desc=f"memory: frames {done + 1}-{checkpoint}", leave=False):
            metrics.update(score * (1 + 0.01 * i) + 0.1 * i, label)
        done = checkpoint
        current, peak = tracemalloc.get_traced_memory()
        out[checkpoint] = {"internal_bytes": metrics.nbytes(), "held_bytes": current - base,
                           "peak_bytes": peak - base}
    tracemalloc.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--memory-frames", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    runs = [compare(kind, args.frames, args.height, args.width, args.seed) for kind in KINDS]
    print(f"{args.frames} frames of {args.height}x{args.width}, one run (wall-clock, this machine)")
    for run in runs:
        print(f"  {run['kind']:<12} {run['pixels']:>10,d} px  streaming {run['streaming_s']:6.2f} s  "
              f"sklearn {run['sklearn_s']:6.2f} s  ratio {run['speedup']:5.1f}x  "
              f"max |diff| {run['max_abs_diff']:.1e}  "
              + "  ".join(f"{k} {run['streaming'][k]:.4f}/{run['exact'][k]:.4f}" for k in run["exact"]))
    mem = memory(args.memory_frames, args.height, args.width, args.seed)
    for n, figures in mem.items():
        print(f"  after {n:>4} frames: internal arrays {figures['internal_bytes'] / 2**20:.1f} MiB, "
              f"held between updates {figures['held_bytes'] / 2**20:.1f} MiB (tracemalloc), "
              f"peak while updating {figures['peak_bytes'] / 2**20:.1f} MiB")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
                                         "memory": mem}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
