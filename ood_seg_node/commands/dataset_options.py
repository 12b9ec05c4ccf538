# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Flags shared by several commands: dataset selection (and opening a dataset from them), and the model."""

from __future__ import annotations

import argparse
import itertools
from typing import Any, Callable, Iterable


def add_dataset_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--dataset", required=required, metavar="FORMAT[:ROOT]",
                        help="'synthetic' or <format>:<root>: lostandfound, fishyscapes, roadanomaly, "
                             "smiyc-anomaly, smiyc-obstacle, streethazards, bdd-anomaly")
    parser.add_argument("--seed", type=int, default=None, help="synthetic: world seed (default 0)")
    parser.add_argument("--frames", type=int, default=None, metavar="K",
                        help="synthetic: sequence length (default 100); real datasets: the first K frames")
    parser.add_argument("--sequences", type=int, default=None, metavar="N",
                        help="synthetic: N drives (seeds SEED..SEED+N-1) of --frames each (default 1)")
    parser.add_argument("--height", type=int, default=None, help="synthetic: image height (default 256)")
    parser.add_argument("--width", type=int, default=None, help="synthetic: image width (default 512)")
    parser.add_argument("--split", default=None,
                        help="lostandfound: test (default) or train; streethazards and bdd-anomaly: test "
                             "(default), training or validation")
    parser.add_argument("--subset", default=None,
                        help="lostandfound: all (default) or no-known; fishyscapes: lostandfound or static")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip frames whose dataset files are missing or corrupt (with a warning) instead "
                             "of stopping (datasets only: a damaged bag is always an error)")


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--segmenter``, ``--segmenter-checkpoint`` and ``--device``, as the node's parameters of the same names."""
    parser.add_argument("--segmenter", default="builtin", help="segmenter spec (default: %(default)s)")
    parser.add_argument("--segmenter-checkpoint", default="", help="segmenter weights (as published)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: %(default)s)")


def open_from_args(args: argparse.Namespace) -> tuple[Any, Callable[[], Iterable[Any]], int]:
    """(dataset, a factory of fresh frame iterators, frame count) from the flags above."""
    from ood_seg_node.datasets import open_dataset, parse_dataset_spec

    if args.frames is not None and args.frames <= 0:
        raise ValueError(f"--frames must be positive, got {args.frames}")
    name, _ = parse_dataset_spec(args.dataset)
    synthetic = name == "synthetic"
    if synthetic:
        options = {"seed": args.seed, "frames": args.frames, "height": args.height, "width": args.width,
                   "sequences": getattr(args, "sequences", None)}
        wrong = {"--split": args.split, "--subset": args.subset}
    else:
        options = {"split": args.split, "subset": args.subset}
        wrong = {"--seed": args.seed, "--height": args.height, "--width": args.width,
                 "--sequences": getattr(args, "sequences", None)}
    given = [flag for flag, value in wrong.items() if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} does not apply to dataset format {name!r}")
    dataset = open_dataset(args.dataset, skip_bad=args.skip_bad, **options)
    total = len(dataset)
    if not synthetic and args.frames is not None:
        total = min(total, args.frames)
    return dataset, lambda: itertools.islice(iter(dataset), total), total
