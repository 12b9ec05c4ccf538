# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training of the builtin segmenter and of each trained head, on the synthetic world.

One loop (:func:`ood_seg_node.training.loop.fit`) drives every trainer; each trained head has one trainer
module, registered in :mod:`ood_seg_node.training.trainers`.

Seed convention (so that evaluation is never on training data): sequences with seeds
``TRAIN_SEEDS`` train, ``VAL_SEEDS`` select checkpoints and calibrate thresholds, and seeds from
``HELD_OUT_SEED_START`` on are held out for evaluation and the demo.
"""

from __future__ import annotations

TRAIN_SEEDS = range(0, 1000)
VAL_SEEDS = range(1000, 1100)
HELD_OUT_SEED_START = 2000
