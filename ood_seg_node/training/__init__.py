# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Training loops for the builtin segmenter and each trainable head, on the synthetic world.

Seed convention (so that evaluation is never on training data): sequences with seeds
``TRAIN_SEEDS`` train, ``VAL_SEEDS`` select checkpoints and calibrate thresholds, and seeds from
``HELD_OUT_SEED_START`` on are held out for evaluation and the demo.
"""

from __future__ import annotations

TRAIN_SEEDS = range(0, 1000)
VAL_SEEDS = range(1000, 1100)
HELD_OUT_SEED_START = 2000
