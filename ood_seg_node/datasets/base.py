# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The frame record every dataset (synthetic world, real benchmark formats, bags) yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ood_seg_node.camera import CameraView
from ood_seg_node.label_spaces import CITYSCAPES


class DatasetError(RuntimeError):
    """A dataset file is missing, corrupt or in the wrong layout (the message names the file)."""


@dataclass
class Frame:
    """One evaluation frame.

    Attributes:
        image: HxWx3 uint8 RGB.
        ood_gt: HxW uint8 anomaly ground truth, 0 inlier / 1 anomaly / 255 ignore, or None.
        semantic: HxW uint8 class ids in ``label_space`` (255 void), or None when the format has none.
        name: frame identifier, the image file stem for file datasets (used to match `--scores`).
        sequence: sequence / scene identifier (frames of one sequence are ordered by ``index``).
        index: frame number inside its sequence.
        label_space: the class set of ``semantic`` (see :mod:`ood_seg_node.label_spaces`).
        depth: HxW float32 camera depth in metres when the source renders it (``synthetic``), else None.
        view: the camera's intrinsics, mount and pose when the source knows them (``synthetic``), else None;
            ground-plane temporal fusion needs it.
    """

    image: np.ndarray
    ood_gt: np.ndarray | None
    semantic: np.ndarray | None
    name: str
    sequence: str = ""
    index: int = 0
    label_space: str = CITYSCAPES.name
    depth: np.ndarray | None = None
    view: CameraView | None = None
