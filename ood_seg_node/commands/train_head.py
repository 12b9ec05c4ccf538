# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head <name>``: train an OOD head on the synthetic world.

The head names are those of the trainer registry (:mod:`ood_seg_node.training.trainers`). The shared
options come from :class:`~ood_seg_node.training.common.HeadTrainingConfig`; each head adds its options
dataclass as ``--<head>-*`` flags. Every run goes through the one loop
(:func:`ood_seg_node.training.loop.fit`): progress, a validation per epoch, ``<out>/log.json`` and the
best checkpoint.
"""

from __future__ import annotations

import argparse
import json

from ood_seg_node.commands import add_config_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_seg_node.training.common import HeadTrainingConfig
    from ood_seg_node.training.trainers import TRAINERS

    parser.add_argument("--head", required=True, choices=TRAINERS.names(), help="head to train")
    add_config_arguments(parser, HeadTrainingConfig, skip=("head",))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    for name in TRAINERS.names():
        group = parser.add_argument_group(f"{name} options")
        add_config_arguments(group, TRAINERS.get(name).options_class, prefix=name)


def run(args: argparse.Namespace) -> int:
    import torch

    from ood_seg_node.training.common import HeadTrainingConfig
    from ood_seg_node.training.loop import fit
    from ood_seg_node.training.trainers import TRAINERS

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(HeadTrainingConfig, args)
    config.out = config.out or f"runs/{config.head}"
    trainer_class = TRAINERS.get(config.head)
    trainer = trainer_class(config, config_from_args(trainer_class.options_class, args, prefix=config.head))
    print(json.dumps(fit(trainer, epochs=config.epochs, out=config.out)))
    return 0
