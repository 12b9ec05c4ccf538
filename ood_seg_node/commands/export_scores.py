# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
r"""``ood_seg export-scores``: a head's score maps in the SegmentMeIfYouCan benchmark's own layout.

Examples::

    ood_seg export-scores --dataset smiyc-anomaly:/data/dataset_AnomalyTrack --head rpl \\
        --segmenter deeplabv3plus_wrn38 --segmenter-checkpoint rev3.pth --head-checkpoint rev3.pth \\
        --score-resolution input --method RPL --out outputs
    DIR_OUTPUTS=outputs python -m road_anomaly_benchmark metric PixBinaryClass RPL AnomalyTrack-validation

Every frame (labelled or not: the test frames' labels stay on the benchmark's server) is written to
``<out>/anomaly_p/<method>/<dataset dir>/<frame id>.hdf5`` exactly as the benchmark's ``save_output`` does.
"""

from __future__ import annotations

import argparse

from ood_seg_node.commands.dataset_options import add_dataset_arguments, add_model_arguments, open_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    add_dataset_arguments(parser, required=True)
    parser.add_argument("--head", required=True, help="head whose score is exported")
    parser.add_argument("--head-checkpoint", default="", help="weights of the head (default: shipped)")
    add_model_arguments(parser)
    parser.add_argument("--score-resolution", choices=("native", "input"), default="native",
                        help="native: score at the logits' resolution, upsampled; input: logits upsampled first, "
                             "as the methods' official code (default: %(default)s)")
    parser.add_argument("--method", required=True, help="method name: the folder under anomaly_p/")
    parser.add_argument("--out", required=True, help="the benchmark's outputs folder (its DIR_OUTPUTS)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ood_seg_node.datasets import parse_dataset_spec
    from ood_seg_node.evaluation.score_layout import benchmark_directory, score_path, write_score
    from ood_seg_node.pipeline import Pipeline

    dataset, frames, total = open_from_args(args)
    directory = benchmark_directory(parse_dataset_spec(args.dataset)[0], getattr(dataset, "split", None))
    pipeline = Pipeline.from_names(segmenter=args.segmenter, head=args.head, device=args.device,
                                   segmenter_checkpoint=args.segmenter_checkpoint,
                                   head_checkpoint=args.head_checkpoint, score_resolution=args.score_resolution)
    written = 0
    for frame in tqdm(frames(), total=total, desc=f"export-scores {args.method}", unit="frame"):
        write_score(score_path(args.out, args.method, directory, frame.name), pipeline.process(frame.image).score)
        written += 1
    folder = score_path(args.out, args.method, directory, "x").parent
    print(f"export-scores: {written} score maps in {folder} (float16, as the benchmark's save_output writes them)")
    return 0
