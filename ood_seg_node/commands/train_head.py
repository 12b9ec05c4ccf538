# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""``ood_seg train-head --head <name>``: train an OOD head on the synthetic world.

The head names are those of the trainer registry (:mod:`ood_seg_node.training.trainers`). The shared
options come from :class:`~ood_seg_node.training.common.HeadTrainingConfig`; each head adds its options
dataclass as ``--<head>-*`` flags. Every run goes through the one loop
(:func:`ood_seg_node.training.loop.fit`): progress, a validation per epoch, ``<out>/log.json``, the
best checkpoint and ``<out>/last.pt`` (``--resume <out>`` continues from it). Under
``torchrun --nproc_per_node N`` each process trains its share of every batch (see
:mod:`ood_seg_node.training.distributed`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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

    from ood_seg_node.training import distributed
    from ood_seg_node.training.common import HeadTrainingConfig
    from ood_seg_node.training.loop import fit
    from ood_seg_node.training.trainers import TRAINERS

    if args.threads:
        torch.set_num_threads(args.threads)
    config = config_from_args(HeadTrainingConfig, args)
    config.out = resolve_out(config.out, config.resume, f"runs/{config.head}")
    runtime = distributed.setup(config.device)
    try:
        config.device = runtime.device or config.device
        distributed.check_batch_size(config.batch_size)
        trainer_class = TRAINERS.get(config.head)
        trainer = trainer_class(config, config_from_args(trainer_class.options_class, args, prefix=config.head))
        result = fit(trainer, epochs=config.epochs, out=config.out, resume=config.resume, amp=config.amp)
        if runtime.main:
            print(json.dumps(result))
    finally:
        distributed.shutdown()
    return 0


def resolve_out(out: str, resume: str, default: str) -> str:
    """The output folder: ``out``, else the folder resumed from, else ``default``.

    A resumed run writes where it left off: an ``out`` other than ``resume`` is refused in one line.
    """
    if not resume:
        return out or default
    if out and out != default and Path(out).resolve() != Path(resume).resolve():
        raise ValueError(f"--resume {resume} continues the run in that folder; --out {out} names another")
    return resume
