# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""SegmentMeIfYouCan (Chan et al., NeurIPS 2021 Datasets and Benchmarks): AnomalyTrack and ObstacleTrack.

Layout of both archives (``dataset_AnomalyTrack``, ``dataset_ObstacleTrack``)::

    <root>/images/<fid>.jpg                         (AnomalyTrack; ObstacleTrack ships .webp)
    <root>/labels_masks/<fid>_labels_semantic.png   (validation frames only)

Labels are already 0 = inlier, 1 = anomaly / obstacle, 255 = void; other values are treated as void.
ObstacleTrack labels mark everything off the road as 255, so its evaluation is restricted to the
drivable area by the labels themselves. The public test frames come without label files: their
``Frame.ood_gt`` is None (such frames can be bagged or scored, not evaluated). Colour visualisations
in ``labels_masks`` (``*_labels_semantic_color.png``) are not read.

``Frame.name`` is the image file stem (the benchmark's frame id); frames are sorted by name.
``smiyc-anomaly`` is anomaly-style, ``smiyc-obstacle`` obstacle-style (``kind``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.files import FileDataset, FrameRecord, list_images, lut, require_dir

TRACKS: dict[str, str] = {"anomaly": "anomaly", "obstacle": "obstacle"}

_LABEL_TO_OOD = lut({0: 0, 1: 1}, 255)


def to_ood(labels: np.ndarray) -> np.ndarray:
    """SMIYC labels (0 / 1 / 255) -> the same, other values -> 255."""
    return _LABEL_TO_OOD[labels]


class SMIYC(FileDataset):
    """One SMIYC track."""

    def __init__(self, root: Path, *, track: str, skip_bad: bool = False) -> None:
        """Discover the frames.

        Args:
            root: the unpacked track folder (holding ``images/`` and, for validation, ``labels_masks/``).
            track: ``anomaly`` or ``obstacle``.
            skip_bad: skip frames with missing/corrupt files (warning) instead of raising.

        Raises:
            DatasetError: unknown track, ``images/`` missing or empty.
        """
        if track not in TRACKS:
            raise DatasetError(f"SMIYC track {track!r} unknown; valid: {', '.join(TRACKS)}")
        root = Path(root)
        images = list_images(require_dir(root / "images", f"SMIYC {track} track images"))
        if not images:
            raise DatasetError(f"no SMIYC images in {root / 'images'}")
        masks = root / "labels_masks"
        records = []
        for i, path in enumerate(images):
            label = masks / f"{path.stem}_labels_semantic.png"
            records.append(
                FrameRecord(image=path, label=label if label.is_file() else None, name=path.stem, index=i)
            )
        super().__init__(
            format_name=f"smiyc-{track}",
            root=root,
            kind=TRACKS[track],
            records=records,
            convert=to_ood,
            skip_bad=skip_bad,
            label_required=False,
        )
        self.track: str = track
