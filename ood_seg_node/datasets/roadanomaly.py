# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Road Anomaly (Lis et al., "Detecting the Unexpected via Image Resynthesis", ICCV 2019).

Two layouts are read:

* the official archive (``RoadAnomaly.zip`` from EPFL CVLab)::

      <root>/frame_list.json                                 (optional: image file names, in order)
      <root>/frames/<name>.jpg                               (or .webp / .png)
      <root>/frames/<name>.labels/labels_semantic.png

  ``labels_semantic.png`` holds 0 = background and 1 = road (both inliers) and 2 = anomaly (the
  anomaly test of the original evaluation code is ``label >= 2``). Converted as 0, 1 -> 0 inlier,
  2..254 -> 1 anomaly, 255 -> 255 ignore (not produced by the official labels, kept in case a copy
  marks void). Frames whose ``.labels`` folder is missing are bad frames.
* the pre-converted copy many OOD repositories use (PEBAL, Meta-OoD)::

      <root>/original/<name>.jpg    <root>/labels/<name>.png   (0 inlier / 1 anomaly / 255 void)

Order: ``frame_list.json`` when present, else by file name. ``Frame.name`` is the image file stem.
Anomalies (mostly animals and large objects) are scored over the whole image: ``kind = "anomaly"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.files import FileDataset, FrameRecord, find_image, list_images, lut

_OFFICIAL_TO_OOD = lut({0: 0, 1: 0, 255: 255} | {value: 1 for value in range(2, 255)}, 1)
_CONVERTED_TO_OOD = lut({0: 0, 1: 1}, 255)


def official_to_ood(labels: np.ndarray) -> np.ndarray:
    """Official labels_semantic (0 background, 1 road, 2 anomaly) -> 0 / 1 / 255."""
    return _OFFICIAL_TO_OOD[labels]


def converted_to_ood(labels: np.ndarray) -> np.ndarray:
    """Pre-converted labels (0 / 1 / 255) -> the same, other values -> 255."""
    return _CONVERTED_TO_OOD[labels]


def _official_images(root: Path, frames: Path) -> list[Path]:
    listing = root / "frame_list.json"
    if not listing.is_file():
        return list_images(frames)
    try:
        names = json.loads(listing.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read RoadAnomaly frame list {listing}: {error}") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"RoadAnomaly frame list {listing} is not a JSON list of file names")
    # Entries are file names; a missing file is reported (or skipped) by the dataset's file check.
    return [frames / Path(n).name if Path(n).suffix else (find_image(frames, n) or frames / n) for n in names]


class RoadAnomaly(FileDataset):
    """The Road Anomaly benchmark (anomaly-style)."""

    def __init__(self, root: Path, *, skip_bad: bool = False) -> None:
        """Discover the frames.

        Args:
            root: the unpacked archive folder (holding ``frames/``) or a pre-converted copy (holding
                ``original/`` and ``labels/``).
            skip_bad: skip frames with missing/corrupt files (warning) instead of raising.

        Raises:
            DatasetError: neither layout found, no images, or a missing label.
        """
        root = Path(root)
        if (root / "frames").is_dir():
            images = _official_images(root, root / "frames")
            records = [
                FrameRecord(image=p, label=p.parent / f"{p.stem}.labels" / "labels_semantic.png", name=p.stem,
                            index=i)
                for i, p in enumerate(images)
            ]
            convert = official_to_ood
        elif (root / "original").is_dir():
            images = list_images(root / "original")
            records = [
                FrameRecord(image=p, label=root / "labels" / f"{p.stem}.png", name=p.stem, index=i)
                for i, p in enumerate(images)
            ]
            convert = converted_to_ood
        else:
            raise DatasetError(f"RoadAnomaly layout not found under {root}: expected frames/ or original/")
        if not records:
            raise DatasetError(f"no RoadAnomaly images under {root}")
        super().__init__(
            format_name="roadanomaly",
            root=root,
            kind="anomaly",
            records=records,
            convert=convert,
            skip_bad=skip_bad,
        )
