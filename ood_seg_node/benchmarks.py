# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Performance ratios printed by ``ood_seg bench`` (and README's performance section).

Every figure is a ratio of two timings taken in the same run on the same machine, so it says something
on another machine too; absolute milliseconds are printed alongside for context. Medians of ``repeats``.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch

from ood_seg_node.heads import build_head, head_names
from ood_seg_node.pipeline import SCORE_RESOLUTIONS, Pipeline
from ood_seg_node.segmenters import Segmenter


def median_ms(function: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def available_heads(segmenter: Segmenter) -> tuple[list, list[str]]:
    """Every registered head that can be built for ``segmenter`` (trained heads need shipped weights)."""
    heads, skipped = [], []
    for name in head_names():
        try:
            heads.append(build_head(name, segmenter))
        except (RuntimeError, ValueError) as error:
            skipped.append(f"{name} ({str(error).splitlines()[0][:80]})")
    return heads, skipped


def head_overhead(segmenter: Segmenter, sizes: list[tuple[int, int]], repeats: int) -> list[dict]:
    """Per head and input size: (head + post-processing) time / segmenter forward, at native resolution."""
    heads, skipped = available_heads(segmenter)
    rows = []
    for size in sizes:
        image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
        for head in heads:
            pipeline = Pipeline(segmenter, head, device="cpu", inference_size=size)
            pipeline.process(image)
            results = [pipeline.process(image).timings_ms for _ in range(repeats)]
            forward = statistics.median(r["segmenter"] for r in results)
            head_ms = statistics.median(r["head"] for r in results)
            post = statistics.median(r["postprocess"] for r in results)
            rows.append({"size": f"{size[0]}x{size[1]}", "head": head.name, "segmenter_ms": forward,
                         "head_ms": head_ms, "post_ms": post, "ratio": (head_ms + post) / forward})
    for note in skipped:
        rows.append({"skipped": note})
    return rows


def score_resolution_cost(segmenter: Segmenter, size: tuple[int, int], repeats: int) -> dict:
    """``score_resolution`` native vs input (energy head): the frame's time after the segmenter's forward.

    That is what the option changes: scoring, argmax and upsampling, at the logits' resolution or the input's.
    """
    image = np.random.default_rng(2).integers(0, 256, (*size, 3), dtype=np.uint8)
    timings = {}
    for resolution in SCORE_RESOLUTIONS:
        pipeline = Pipeline(segmenter, build_head("energy", segmenter), device="cpu", inference_size=size,
                            score_resolution=resolution)
        pipeline.process(image)
        timings[resolution] = statistics.median(
            t["total"] - t["preprocess"] - t["segmenter"]
            for t in (pipeline.process(image).timings_ms for _ in range(repeats)))
    return {"size": f"{size[0]}x{size[1]}", "native_ms": timings["native"], "input_ms": timings["input"],
            "ratio": timings["input"] / timings["native"]}


def matmul_gflops(repeats: int, size: int = 2048) -> float:
    """The machine's float32 matrix-multiply rate (GFLOP/s) with torch's current threads: the floor's divisor."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / median_ms(lambda: a @ b, repeats) / 1e6


def forward_gflop(segmenter: Segmenter, size: tuple[int, int]) -> float:
    """Floating-point operations of one segmenter forward at ``size`` (torch's FLOP counter: convs, matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        segmenter(torch.rand(1, 3, *size))
    return counter.get_total_flops() / 1e9


def backend_speedup(segmenter: Segmenter, size: tuple[int, int], repeats: int, gflops: float) -> dict:
    """Segmenter + msp head: eager vs channels-last traced/frozen vs ONNX Runtime, and each over the floor.

    The floor is the forward's FLOPs at this machine's matmul rate (:func:`matmul_gflops`): no backend can
    beat it on these convolutions, so ``time / floor`` says how much is left to gain.
    """
    import tempfile

    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    head = build_head("msp", segmenter)
    timings = {}
    with tempfile.TemporaryDirectory() as cache:
        for label, options in (("eager", {"optimize": False}), ("optimised", {}),
                               ("onnxruntime", {"backend": "onnxruntime", "cache_dir": cache})):
            pipeline = Pipeline(segmenter, head, device="cpu", inference_size=size, **options)
            pipeline.process(image)
            timings[label] = statistics.median(
                t["segmenter"] + t["head"] for t in (pipeline.process(image).timings_ms for _ in range(repeats)))
            segmenter.to(memory_format=torch.contiguous_format)
    floor = forward_gflop(segmenter, size) / gflops * 1e3
    return {"size": f"{size[0]}x{size[1]}", **{f"{k}_ms": v for k, v in timings.items()}, "floor_ms": floor,
            "speedup": timings["eager"] / timings["optimised"],
            "onnxruntime_speedup": timings["eager"] / timings["onnxruntime"],
            **{f"{k}_over_floor": v / floor for k, v in timings.items()}}
