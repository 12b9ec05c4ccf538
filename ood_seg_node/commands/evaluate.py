# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg evaluate``: benchmark-style evaluation of heads on a dataset, a bag or precomputed scores.

Examples::

    ood_seg evaluate --dataset synthetic --seed 2001 --frames 60 --head msp --head energy --out runs/eval
    ood_seg evaluate --bag runs/demo_bag --head obsnet --out runs/eval_bag
    ood_seg evaluate --dataset smiyc-obstacle:/data/ObstacleTrack --scores /data/my_method --out runs/mine
    ood_seg evaluate --dataset lostandfound:/data/laf --head energy --shard 0/4 --out runs/shard0
    ood_seg evaluate --merge runs/shard0 runs/shard1 runs/shard2 runs/shard3 --out runs/laf
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ood_seg_node.commands.dataset_options import add_dataset_arguments, add_model_arguments, open_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    source = parser.add_argument_group("frames (one of --dataset, --bag, or --merge)")
    add_dataset_arguments(source, required=False)
    source.add_argument("--bag", help="a rosbag2 with /camera/image_raw and /camera/ood_gt")
    source.add_argument("--merge", nargs="+", metavar="DIR", help="merge the partial results of sharded runs")
    methods = parser.add_argument_group("what to evaluate")
    methods.add_argument("--head", action="append", default=[], metavar="NAME[=CHECKPOINT]",
                         help="head to evaluate; repeat to compare heads (one segmenter forward for all). "
                              "NAME=CHECKPOINT evaluates that checkpoint, labelled NAME:<its folder>, so "
                              "variants of one head (ablations) compare in one run")
    methods.add_argument("--head-checkpoint", action="append", default=[], metavar="HEAD=PATH",
                         help="weights for a trained head (default: the shipped ones)")
    methods.add_argument("--scores", metavar="DIR",
                         help="precomputed score maps, one float32 <frame name>.npy per frame")
    methods.add_argument("--scores-name", default="", help="name of the --scores method (default: folder name)")
    add_model_arguments(methods)
    methods.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                         help="run the heads in PyTorch or as one exported ONNX graph in ONNX Runtime "
                              "(default: %(default)s)")
    methods.add_argument("--fp16", action="store_true", help="half-precision TensorRT engines (onnxruntime, cuda)")
    methods.add_argument("--engine-cache-dir", default="", help="exported graphs and engines (default ~/.cache)")
    methods.add_argument("--score-resolution", choices=("native", "input", "both"), default="native",
                         help="native: score at the logits' resolution, then upsample (the node's default); "
                              "input: upsample the logits first, as the papers' code does; both: every head "
                              "twice on the same frames, the input-order one as <head>@input "
                              "(default: %(default)s)")
    temporal = parser.add_argument_group("sequences (docs/temporal.md)")
    temporal.add_argument("--temporal-fusion", nargs="+", choices=("none", "flow", "ground"), default=[],
                          metavar="MODE",
                          help="fuse every head's score over time (none, flow, ground; several compare on the same "
                               "forward as <head>@<mode>), track obstacles, and measure flicker, obstacle-level "
                               "precision/recall of per-frame components and confirmed tracks, and first frames")
    temporal.add_argument("--temporal-alpha", type=float, default=0.7,
                          help="weight of the current frame in the fusion, in (0, 1] (default: %(default)s)")
    temporal.add_argument("--track-confirm-hits", type=int, default=3,
                          help="a track is confirmed when seen in N of the last --track-window frames (default 3)")
    temporal.add_argument("--track-window", type=int, default=5, help="M of 'N of the last M frames' (default 5)")
    options = parser.add_argument_group("evaluation")
    options.add_argument("--out", required=True, help="output folder")
    options.add_argument("--kind", choices=("obstacle", "anomaly"), default=None,
                         help="SMIYC component size filters (default: the dataset's kind, obstacle for bags)")
    options.add_argument("--component-threshold", action="append", default=[], metavar="[HEAD=]VALUE",
                         help="fixed pixel threshold for component metrics (default: the run's best pixel F1; "
                              "sharded runs: the head's calibrated threshold)")
    options.add_argument("--shard", default="0/1", metavar="I/N", help="evaluate every N-th frame from frame I")
    options.add_argument("--overlays", type=int, default=4, help="worst-frame overlays per head (default 4)")
    options.add_argument("--protocol", choices=("exact", "smiyc"), default="exact",
                         help="exact: unbinned pixel metrics (default); smiyc: the SegmentMeIfYouCan benchmark's "
                              "own computation (binned curve, its best-F1 threshold and segment rules); "
                              "metrics.json names the protocol of every figure")
    options.add_argument("--float16", action="store_true",
                         help="round scores to float16 before every metric, as the SMIYC benchmark stores them")


def _pairs(items: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` items; a bare ``VALUE`` applies to every head (key ``*``)."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            key, value = "*", item
        pairs[key] = value
    return pairs


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be I/N, got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text}: need 0 <= I < N")
    return index, count


def _frames(args: argparse.Namespace):
    if args.bag:
        from ood_seg_node.bags import bag_info, read_bag

        if args.skip_bad:  # frames are named by position and split across chunks: no part of a bag is skippable
            raise ValueError("--skip-bad does not apply to --bag: a bag with a damaged chunk is an error; "
                             "re-make the bag")
        info = bag_info(args.bag)
        return (lambda: (frame.to_frame() for frame in read_bag(args.bag))), len(info.frame_names) or None, \
            info.kind or "obstacle"
    dataset, frames, total = open_from_args(args)
    return frames, total, dataset.kind


def _scorers(args: argparse.Namespace, mask_thresholds: dict[str, float]) -> list:
    from ood_seg_node.heads import build_head
    from ood_seg_node.offline_evaluation import PipelineScorer, ScoreFileScorer
    from ood_seg_node.pipeline import Pipeline
    from ood_seg_node.segmenters import build_segmenter

    scorers = []
    if args.scores:
        scorers.append(ScoreFileScorer(args.scores, args.scores_name))
    if args.head:
        checkpoints = _pairs(args.head_checkpoint)
        segmenter = build_segmenter(args.segmenter, args.segmenter_checkpoint)
        shared, own = [], []
        for item in args.head:
            name, _, path = item.partition("=")
            head = build_head(name, segmenter, path or checkpoints.get(name, ""))
            label = name
            if path:  # a variant: label it by its run folder (runs/obsnet_noattack/obsnet.pt -> obsnet:obsnet_noattack)
                folder = Path(path).resolve()
                label = f"{name}:{folder.parent.name if folder.stem == name else folder.stem}"
            (own if head.segmenter_override() is not None else shared).append((head, label))
        groups = ([shared] if shared else []) + [[entry] for entry in own]
        resolutions = ("native", "input") if args.score_resolution == "both" else (args.score_resolution,)
        suffix = {"native": "", "input": "@input" if args.score_resolution == "both" else ""}
        scorers += [PipelineScorer(Pipeline(segmenter, [head for head, _ in group], device=args.device,
                                            score_resolution=resolution, backend=args.backend, fp16=args.fp16,
                                            cache_dir=args.engine_cache_dir,
                                            names=[label + suffix[resolution] for _, label in group]),
                                   fusion_modes=args.temporal_fusion, alpha=args.temporal_alpha,
                                   confirm_hits=args.track_confirm_hits, window=args.track_window,
                                   mask_thresholds=mask_thresholds)
                    for resolution in resolutions for group in groups]
    if not scorers:
        raise ValueError("nothing to evaluate: give --head and/or --scores")
    return scorers


def run(args: argparse.Namespace) -> int:
    from ood_seg_node.evaluation import format_table, format_temporal_table, merge_partials
    from ood_seg_node.offline_evaluation import evaluate_frames

    if args.merge:
        results = merge_partials(args.merge).write(args.out)
        print(format_table(results))
        return 0
    if bool(args.bag) == bool(args.dataset):
        raise ValueError("give exactly one of --dataset and --bag (or --merge)")
    frames, total, kind = _frames(args)
    thresholds = {k: float(v) for k, v in _pairs(args.component_threshold).items()}
    every = thresholds.pop("*", None)
    scorers = _scorers(args, {**{h.partition("=")[0]: every for h in args.head if every is not None}, **thresholds})
    if every is not None:
        thresholds.update({name: every for s in scorers for name in s.names if name not in thresholds})
    shard = _shard(args.shard)
    meta = {"source": args.bag or args.dataset, "segmenter": args.segmenter, "protocol": args.protocol,
            "float16": args.float16, "temporal_fusion": args.temporal_fusion,
            "heads": [name for s in scorers for name in s.names]}
    run_result = evaluate_frames(
        frames, scorers, kind=args.kind or kind, total=total, shard=shard, component_thresholds=thresholds,
        overlays_dir=f"{args.out}/overlays", overlays=args.overlays, meta=meta, protocol=args.protocol,
        float16=args.float16,
    )
    if shard[1] > 1:
        run_result.write_partial(f"{args.out}/partial.json")
        print(f"evaluate: shard {args.shard} of {run_result.meta['frames']} frames written to "
              f"{args.out}/partial.json; merge with --merge")
    results = run_result.write(args.out)
    print(format_table(results))
    if args.temporal_fusion:
        print(format_temporal_table(results))
    print(f"evaluate: report in {args.out} (metrics.json, metrics.csv, pr_curves.png, roc_curves.png, overlays/)")
    return 0
