# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-segmenter``: train the builtin segmenter on the synthetic world.

``--resume <out>`` continues a run from its ``last.pt``; under ``torchrun --nproc_per_node N`` each process
trains its share of every batch (see :mod:`ood_seg_node.training.distributed`).
"""

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

    from ood_seg_node.commands.train_head import resolve_out
    from ood_seg_node.training import distributed
    from ood_seg_node.training.loop import fit
    from ood_seg_node.training.segmenter import SegmenterTrainer, SegmenterTrainingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(SegmenterTrainingConfig, args)
    config.out = resolve_out(config.out, config.resume, SegmenterTrainingConfig.out)
    runtime = distributed.setup(config.device)
    try:
        config.device = runtime.device or config.device
        distributed.check_batch_size(config.batch_size)
        result = fit(SegmenterTrainer(config), epochs=config.epochs, out=config.out, resume=config.resume,
                     amp=config.amp)
        if runtime.main:
            print(json.dumps(result))
    finally:
        distributed.shutdown()
    return 0
