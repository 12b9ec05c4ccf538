# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg export``: the segmenter and its head(s) as one ONNX graph, checked against PyTorch on one frame.

Writes ``--out`` (the graph, weights inside) and ``<out>.json`` (what another stack needs to run it: input
name, size and layout, outputs, class names, score order, the thresholds the node would use), then runs the
graph in ONNX Runtime on a synthetic frame and prints how far it is from the PyTorch pipeline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--segmenter", default="builtin", help="segmenter spec (default: %(default)s)")
    parser.add_argument("--segmenter-checkpoint", default="", help="segmenter weights (as published)")
    parser.add_argument("--head", action="append", required=True, metavar="NAME[=CHECKPOINT]",
                        help="head(s) in the graph, scored on one forward (repeatable; default checkpoints)")
    parser.add_argument("--size", default="", metavar="HxW",
                        help="input size (default: the segmenter's inference size; required for segmenters that "
                             "run at the input's size, e.g. 1024x2048)")
    parser.add_argument("--dynamic", action="store_true", help="height and width as dynamic axes")
    parser.add_argument("--score-resolution", choices=("native", "input"), default="native",
                        help="scores at the logits' resolution (cheap) or the input's (official order)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ood_seg_node.datasets import SyntheticDataset
    from ood_seg_node.deploy import OnnxRuntimeRunner, export_onnx, output_names
    from ood_seg_node.heads import build_head
    from ood_seg_node.pipeline import Pipeline, parse_size
    from ood_seg_node.segmenters import build_segmenter

    segmenter = build_segmenter(args.segmenter, args.segmenter_checkpoint)
    heads, names = [], []
    for item in args.head:
        name, _, checkpoint = item.partition("=")
        heads.append(build_head(name, segmenter, checkpoint))
        names.append(name)
    if len(set(names)) != len(names):
        raise ValueError(f"each head once per graph, got {names}")
    pipeline = Pipeline(segmenter, heads, names=names, device="cpu", score_resolution=args.score_resolution)
    if args.size:
        size = parse_size(args.size, minimum=32, what="--size")
    elif pipeline.inference_size:
        size = tuple(pipeline.inference_size)
    else:
        raise ValueError(f"segmenter {args.segmenter} runs at the input's size: give --size HxW (e.g. 1024x2048)")
    out = Path(args.out)
    export_onnx(pipeline.segmenter, pipeline.heads, names, size, out, score_resolution=args.score_resolution,
                dynamic=args.dynamic)
    description = {
        "input": {"name": "rgb", "shape": [1, *size, 3], "dtype": "uint8", "layout": "NHWC, RGB, 0-255",
                  "dynamic_axes": ["height", "width"] if args.dynamic else []},
        "outputs": output_names(names), "score_resolution": args.score_resolution,
        "segmenter": pipeline.segmenter.identity, "heads": {name: head.name for name, head in zip(names, heads)},
        "label_space": pipeline.segmenter.label_space.name, "class_names": list(pipeline.segmenter.class_names),
        "thresholds": {name: float(head.default_threshold) for name, head in zip(names, heads)},
    }
    Path(f"{out}.json").write_text(json.dumps(description, indent=2))

    frame = SyntheticDataset(seed=7, frames=1, height=size[0], width=size[1])[0].image
    runner = OnnxRuntimeRunner(pipeline.segmenter, pipeline.heads, names, score_resolution=args.score_resolution,
                               device=pipeline.device, cache_dir=out.parent)
    runner.preload(size, out)
    labels, scores = runner.run(frame)
    reference_labels, reference = pipeline.infer(frame)[:2]
    agree = float((labels == reference_labels.numpy()).mean())
    worst = max(float(np.abs(scores[name] - reference[name].numpy()).max()) for name in names)
    print(f"export: wrote {out} ({out.stat().st_size / 2**20:.1f} MiB) and {out}.json; inputs {size[0]}x{size[1]}; "
          f"ONNX Runtime vs PyTorch on a synthetic frame: labels equal on {100 * agree:.3f} % of pixels, "
          f"largest score difference {worst:.2e}")
    return 0
