# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The class sets segmenters predict: names in class-id order and the palette ``ood/labels_color`` uses.

Cityscapes' 19 train-id classes are the default (every Cityscapes segmenter here). StreetHazards (Hendrycks
et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022) has 13 classes, the label
set of the PSPNet teacher DiCNet publishes: ids 0-12 are the annotation values 1-13 minus one, and value 14
(id 13) is the anomaly, which no segmenter predicts. Its palette is the one the StreetHazards release and
the anomaly-seg code colour it with (CARLA's). A segmenter names its label space; evaluation computes mIoU
only against ground truth in the same space.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ood_seg_node import cityscapes


@dataclass(frozen=True)
class LabelSpace:
    """A class set: ``name``, ``class_names`` in id order and an (N, 3) uint8 RGB ``palette``."""

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """HxW uint8 class ids -> HxWx3 RGB with this palette (ids outside the set, void 255 included, black).

        OpenCV's table lookup: 7x faster than NumPy indexing at 1024x2048, identical output.
        """
        lut = np.zeros((256, 1, 3), dtype=np.uint8)
        lut[: self.num_classes, 0] = self.palette
        labels = np.ascontiguousarray(labels, dtype=np.uint8)
        return cv2.LUT(cv2.merge([labels, labels, labels]), lut)


CITYSCAPES = LabelSpace("cityscapes", cityscapes.CLASS_NAMES, cityscapes.PALETTE)

STREETHAZARDS = LabelSpace(
    "streethazards",
    ("unlabeled", "building", "fence", "other", "pedestrian", "pole", "road line", "road", "sidewalk",
     "vegetation", "car", "wall", "traffic sign"),
    np.array(
        [
            (0, 0, 0), (70, 70, 70), (190, 153, 153), (250, 170, 160), (220, 20, 60), (153, 153, 153),
            (157, 234, 50), (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142), (102, 102, 156),
            (220, 220, 0),
        ],
        dtype=np.uint8,
    ),
)
STREETHAZARDS_ANOMALY_ID = 13  # after the official ``label - 1``; no segmenter predicts it

LABEL_SPACES: dict[str, LabelSpace] = {space.name: space for space in (CITYSCAPES, STREETHAZARDS)}


def label_space_with(num_classes: int) -> LabelSpace | None:
    """The known label space of ``num_classes`` classes, or None."""
    return next((space for space in LABEL_SPACES.values() if space.num_classes == num_classes), None)
