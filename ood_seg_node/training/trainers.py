# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The trainer registry of ``ood_seg train-head --head <name>``: one trainer per trained head.

Adding a trained head's trainer = its module under ``training/`` (a
:class:`~ood_seg_node.training.head_trainer.HeadTrainer` registered with ``@TRAINERS.register(name)``) plus
its name in the import below. The import registers every trainer, so a trainer module that fails to import
is an ImportError here, never a silently missing trainer.
"""

from __future__ import annotations

from ood_seg_node.training import dicnet, nflowjs, obsnet, rpl  # noqa: F401  (registers the trainers)
from ood_seg_node.training.head_trainer import TRAINERS, HeadTrainer

__all__ = ["TRAINERS", "HeadTrainer"]
