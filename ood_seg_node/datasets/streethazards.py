# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""StreetHazards (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022).

The CARLA-rendered anomaly benchmark DiCNet's published weights are trained and evaluated on. Layout of
the two released archives (``streethazards_train.tar``, ``streethazards_test.tar``), unpacked side by side::

    <root>/train/images/training/<town>/<n>.png      <root>/train/annotations/training/<town>/<n>.png
    <root>/train/images/validation/<town>/<n>.png    <root>/train/annotations/validation/<town>/<n>.png
    <root>/test/images/test/<town>/<n>.png           <root>/test/annotations/test/<town>/<n>.png

``<root>`` may also be one unpacked archive (``train/`` or ``test/`` itself). Annotations hold 1-13 for the
13 classes and 14 for the anomaly (test split only). Converted as the official code reads them (value - 1):
``semantic`` = 0-12 in the StreetHazards label space (the anomaly and a stray 0 are void, 255);
``ood_gt`` = 1 on the anomaly, 0 everywhere else (the official evaluation ignores no pixel). Each town is a
sequence; frames are ordered by town, then by number. Anomalies are scored over the whole image:
``kind = "anomaly"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.files import FileDataset, FrameRecord, list_images, lut
from ood_seg_node.label_spaces import STREETHAZARDS

SPLITS = {"test": ("test", "test"), "training": ("train", "training"), "validation": ("train", "validation")}
ANOMALY_VALUE = 14
_TO_OOD = lut({ANOMALY_VALUE: 1}, 0)
_TO_SEMANTIC = lut({value: value - 1 for value in range(1, STREETHAZARDS.num_classes + 1)}, 255)


def to_ood(labels: np.ndarray) -> np.ndarray:
    """Annotation values -> 1 on the anomaly (14), 0 elsewhere."""
    return _TO_OOD[labels]


def to_semantic(labels: np.ndarray) -> np.ndarray:
    """Annotation values 1-13 -> class ids 0-12; the anomaly and anything else -> 255."""
    return _TO_SEMANTIC[labels]


def _split_folder(root: Path, archive: str) -> Path:
    """``<root>/<archive>``, or ``root`` itself when it is that unpacked archive."""
    if (root / archive / "images").is_dir():
        return root / archive
    if root.name == archive and (root / "images").is_dir():
        return root
    raise DatasetError(f"StreetHazards layout not found under {root}: expected {archive}/images/ "
                       f"(the unpacked streethazards_{archive}.tar)")


class StreetHazards(FileDataset):
    """A StreetHazards split (anomaly-style), with StreetHazards class ids as ``semantic``."""

    label_space = STREETHAZARDS.name

    def __init__(self, root: Path, *, split: str | None = None, skip_bad: bool = False) -> None:
        """Discover the frames.

        Args:
            root: the folder holding the unpacked ``train/`` and/or ``test/``, or one of them.
            split: ``test`` (default), ``training`` or ``validation``.
            skip_bad: skip frames with missing/corrupt files (warning) instead of raising.

        Raises:
            DatasetError: unknown split, layout not found, no images, or a missing label.
        """
        split = split or "test"
        if split not in SPLITS:
            raise DatasetError(f"unknown StreetHazards split {split!r}; valid: {', '.join(SPLITS)}")
        archive, folder = SPLITS[split]
        base = _split_folder(Path(root), archive)
        images = base / "images" / folder
        if not images.is_dir():
            raise DatasetError(f"StreetHazards split folder not found: {images}")
        records = []
        for town in sorted(path for path in images.iterdir() if path.is_dir()):
            frames = sorted(list_images(town), key=lambda path: (len(path.stem), path.stem))
            records += [FrameRecord(image=path, label=base / "annotations" / folder / town.name / f"{path.stem}.png",
                                    name=f"{town.name}_{path.stem}", sequence=town.name, index=i)
                        for i, path in enumerate(frames)]
        if not records:
            raise DatasetError(f"no StreetHazards images under {images}")
        super().__init__(format_name="streethazards", root=Path(root), kind="anomaly", records=records,
                         convert=to_ood, semantic=to_semantic, skip_bad=skip_bad)
