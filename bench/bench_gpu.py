# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""GPU benchmark in one run: PyTorch CUDA fp32/fp16 vs ONNX Runtime CUDA and TensorRT providers.

    python bench/bench_gpu.py [--segmenter builtin] [--segmenter-checkpoint ...] [--head energy]
                              [--sizes 512x1024,1024x2048] [--repeats 20] [--json gpu.json]

Prints, per input size, the median milliseconds of segmenter + head (the pipeline's inference, without
decode and publishing) for each backend that this machine has, the speed-up over PyTorch fp32, and for the
fp16 variants the largest score difference and the share of equal labels against fp32 on a synthetic frame.
Without a CUDA device it says so and measures nothing. Takes a few minutes (TensorRT builds one engine per
size and precision, cached in a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import numpy as np
import torch

from ood_seg_node.datasets import SyntheticDataset
from ood_seg_node.pipeline import Pipeline, parse_size


def _median_ms(pipeline: Pipeline, frame: np.ndarray, repeats: int) -> float:
    pipeline.infer(frame)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipeline.infer(frame)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _variants(cache: str) -> dict[str, dict]:
    variants = {"torch fp32": {}, "torch fp16 (autocast)": {"autocast": True}}
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if "CUDAExecutionProvider" in available:
            variants["onnxruntime CUDA/TensorRT fp32"] = {"backend": "onnxruntime", "cache_dir": cache}
        if "TensorrtExecutionProvider" in available:
            variants["onnxruntime TensorRT fp16"] = {"backend": "onnxruntime", "cache_dir": cache, "fp16": True}
    return variants


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segmenter", default="builtin")
    parser.add_argument("--segmenter-checkpoint", default="")
    parser.add_argument("--head", default="energy")
    parser.add_argument("--sizes", default="512x1024,1024x2048")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device on this machine; nothing measured")
        return 0
    print(f"bench_gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}, head {args.head}")
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for text in args.sizes.split(","):
            size = parse_size(text, what="each of --sizes")
            frame = SyntheticDataset(seed=5, frames=1, height=size[0], width=size[1])[0].image
            reference = None
            for label, options in _variants(cache).items():
                autocast = options.pop("autocast", False)
                pipeline = Pipeline.from_names(segmenter=args.segmenter, segmenter_checkpoint=args.segmenter_checkpoint,
                                               head=args.head, device="cuda", inference_size=size, **options)
                with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
                    milliseconds = _median_ms(pipeline, frame, args.repeats)
                    labels, scores, _ = pipeline.infer(frame)
                labels, score = labels.cpu().numpy(), scores[args.head].float().cpu().numpy()
                if reference is None:
                    reference = (labels, score, milliseconds)
                row = {"size": text, "backend": label, "ms": milliseconds, "speedup": reference[2] / milliseconds,
                       "labels_equal": float((labels == reference[0]).mean()),
                       "max_score_diff": float(np.abs(score - reference[1]).max())}
                rows.append(row)
                print(f"{text:>10} {label:<32} {milliseconds:8.2f} ms  x{row['speedup']:.2f}  labels equal "
                      f"{100 * row['labels_equal']:.2f} %  max |score diff| {row['max_score_diff']:.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
