# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Fishyscapes validation sets (Blum et al., IJCV 2021): FS Lost & Found and FS Static.

The benchmark itself is a hidden test server; what circulates (and what PEBAL, RPL, Meta-OoD and most
public code read) are the two validation sets exported as image/label folder pairs::

    <root>/LostAndFound/original/<name>.png    <root>/LostAndFound/labels/<name>.png
    <root>/Static/original/<name>.png          <root>/Static/labels/<name>.png

``<root>`` may also be one of those two folders directly (it then holds ``original/`` and ``labels/``).
Images may be ``.png``, ``.jpg`` or ``.webp``; a label is ``labels/<image stem>.png``.

Labels are already in the package convention: 0 inlier, 1 out-of-distribution, 255 void. Any other
value is treated as void (255). ``Frame.name`` is the image file stem; frames are sorted by name.

Option ``subset``: ``lostandfound`` (default; real obstacles on the road, evaluated like Lost&Found,
``kind = "obstacle"``) or ``static`` (objects pasted into Cityscapes validation images, evaluated on the
whole image, ``kind = "anomaly"``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.files import FileDataset, FrameRecord, list_images, lut, require_dir

SUBSETS: dict[str, tuple[str, str]] = {
    # subset -> (folder name in the distributed archive, SMIYC filter kind)
    "lostandfound": ("LostAndFound", "obstacle"),
    "static": ("Static", "anomaly"),
}

_LABEL_TO_OOD = lut({0: 0, 1: 1}, 255)


def to_ood(labels: np.ndarray) -> np.ndarray:
    """Fishyscapes labels (0 in / 1 OOD / 255 void) -> the same, other values -> 255."""
    return _LABEL_TO_OOD[labels]


def _subset_dir(root: Path, folder: str) -> Path:
    if (root / "original").is_dir():
        return root
    for child in sorted(root.iterdir()) if root.is_dir() else ():
        if child.is_dir() and child.name.lower() == folder.lower():
            return child
    raise DatasetError(f"Fishyscapes folder {folder}/ (with original/ and labels/) missing under {root}")


class Fishyscapes(FileDataset):
    """A Fishyscapes validation set (FS Lost & Found or FS Static)."""

    def __init__(self, root: Path, *, subset: str = "lostandfound", skip_bad: bool = False) -> None:
        """Discover the frames of one subset.

        Args:
            root: the folder holding ``LostAndFound/`` and/or ``Static/``, or one of them.
            subset: ``lostandfound`` or ``static``.
            skip_bad: skip frames with missing/corrupt files (warning) instead of raising.

        Raises:
            DatasetError: unknown subset, missing folders, no images, or a missing label file.
        """
        if subset not in SUBSETS:
            raise DatasetError(f"fishyscapes subset {subset!r} unknown; valid: {', '.join(SUBSETS)}")
        folder, kind = SUBSETS[subset]
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"Fishyscapes root directory missing: {root}")
        base = _subset_dir(root, folder)
        images = list_images(require_dir(base / "original", "Fishyscapes original"))
        labels = base / "labels"
        if not images:
            raise DatasetError(f"no Fishyscapes images in {base / 'original'}")
        records = [
            FrameRecord(image=path, label=labels / f"{path.stem}.png", name=path.stem, index=i)
            for i, path in enumerate(images)
        ]
        super().__init__(
            format_name="fishyscapes",
            root=root,
            kind=kind,
            records=records,
            convert=to_ood,
            skip_bad=skip_bad,
        )
        self.subset: str = subset
