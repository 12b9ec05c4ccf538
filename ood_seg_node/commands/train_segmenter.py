# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-segmenter``: train the builtin segmenter on the synthetic world."""

from __future__ import annotations

import argparse
import json

from ood_seg_node.commands import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_seg_node.training.segmenter import SegmenterTrainingConfig

    add_config_arguments(parser, SegmenterTrainingConfig)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ood_seg_node.training.loop import fit
    from ood_seg_node.training.segmenter import SegmenterTrainer, SegmenterTrainingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(SegmenterTrainingConfig, args)
    print(json.dumps(fit(SegmenterTrainer(config), epochs=config.epochs, out=config.out)))
    return 0
