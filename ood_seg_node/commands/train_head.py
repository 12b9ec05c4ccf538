# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head <name>``: train an OOD head on the synthetic world.

Each trainable head has a module ``ood_seg_node.training.<head>`` with ``add_arguments(group)`` for its
own flags (prefixed with the head name) and ``train(config: HeadTrainingConfig, args) -> dict``; every run
shows progress, validates each epoch, writes ``<out>/log.json`` and keeps the best checkpoint.
"""

from __future__ import annotations

import argparse
import importlib
import json

from ood_seg_node.commands import add_config_arguments, config_from_args

TRAINERS = ("obsnet", "rpl", "nflowjs", "dicnet")


def _trainer(head: str):
    return importlib.import_module(f"ood_seg_node.training.{head}")


def _available() -> list[str]:
    names = []
    for head in TRAINERS:
        try:
            _trainer(head)
        except ModuleNotFoundError as error:
            if error.name != f"ood_seg_node.training.{head}":
                raise
            continue
        names.append(head)
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ood_seg_node.training.common import HeadTrainingConfig

    available = _available()
    parser.add_argument("--head", required=True, choices=available, help="head to train")
    add_config_arguments(parser, HeadTrainingConfig, skip=("head",))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    for head in available:
        _trainer(head).add_arguments(parser.add_argument_group(f"{head} options"))


def run(args: argparse.Namespace) -> int:
    import torch

    from ood_seg_node.training.common import HeadTrainingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(HeadTrainingConfig, args)
    if not config.out:
        config.out = f"runs/{config.head}"
    result = _trainer(config.head).train(config, args)
    print(json.dumps(result))
    return 0
