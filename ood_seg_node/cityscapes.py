# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Cityscapes train-id classes and palette: the default label space (see :mod:`ood_seg_node.label_spaces`)."""

from __future__ import annotations

import numpy as np

CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_INDEX = 255
TRAIN_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)

# Anomaly ground truth convention used everywhere inside the package (SMIYC).
OOD_INLIER, OOD_ANOMALY, OOD_IGNORE = 0, 1, 255

