# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Lost and Found (Pinggera et al., IROS 2016) in its published Cityscapes-style layout.

Layout read (``<root>`` is the folder holding ``leftImg8bit`` and ``gtCoarse``)::

    leftImg8bit/{train,test}/<NN_scene>/<NN_scene>_<seq:06d>_<frame:06d>_leftImg8bit.png
    gtCoarse/{train,test}/<NN_scene>/<NN_scene>_<seq:06d>_<frame:06d>_gtCoarse_labelIds.png

Images may also be ``.jpg``/``.webp`` (re-encoded copies); the right stereo images (``rightImg8bit``),
disparity and the other ``gtCoarse`` files are not read.

Labels (``gtCoarse_labelIds``, ids of the dataset's label table, laf_table.pdf): 0 = unlabeled /
ego vehicle / outside the annotated region, 1 = free space (the road), 2..43 = obstacle classes.
Converted as 0 -> 255 ignore, 1 -> 0 inlier, >= 2 -> 1 anomaly (the convention of the SMIYC
``LostAndFound-test`` split and of Lis et al.'s evaluation code). Evaluation is therefore restricted to
the road and the obstacles on it, which is why the dataset is ``kind = "obstacle"``.

Frame order: scene folder, then sequence number, then frame number. ``Frame.name`` is the image file
stem (``04_Maurener_Weg_8_000000_000030_leftImg8bit``), ``Frame.sequence`` the scene plus sequence
(``04_Maurener_Weg_8_000000``) and ``Frame.index`` the frame number (30).

Subsets (option ``subset``):

* ``all`` -- every frame of the split (``split`` = ``test`` by default, or ``train``).
* ``no-known`` -- the "LostAndFound-NoKnown" protocol of SegmentMeIfYouCan (Chan et al., NeurIPS 2021
  Datasets and Benchmarks): frames showing objects of classes a Cityscapes model knows -- children
  (humans -> Cityscapes ``person``) and bicycles (``bicycle``) -- are excluded, so that every labelled
  obstacle is truly unknown. Implemented as: drop every frame whose labelIds contain any of
  :data:`KNOWN_OBJECT_IDS` = {23 Bicycle, 26 Kid dummy, 40 Kid (walking), 41 Kid (on a bobby car),
  42 Kid (on a small bobby car), 43 Kid (crawling)}, and every frame without any labelled pixel (all
  ids 0; SMIYC's ``LostAndFound-test`` drops those 17 test frames too). The ids follow the label table
  distributed with the dataset as reproduced by public loaders (e.g. Meta-OoD's ``LostAndFound``
  class); SMIYC reports 1043 test frames for NoKnown, which this filter is meant to reproduce but
  which could not be checked here without the data. This subset reads every label map once when the
  dataset is opened.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ood_seg_node.datasets.base import DatasetError
from ood_seg_node.datasets.files import IMAGE_SUFFIXES, FileDataset, FrameRecord, lut, read_label, require_dir

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("test", "train")
SUBSETS: tuple[str, ...] = ("all", "no-known")

FREE_SPACE_ID = 1
KNOWN_OBJECT_IDS: frozenset[int] = frozenset({23, 26, 40, 41, 42, 43})
"""Lost&Found label ids of objects from Cityscapes classes: bicycle (23) and children (26, 40-43)."""

_LABEL_TO_OOD = lut({0: 255, FREE_SPACE_ID: 0} | {value: 1 for value in range(2, 256)}, 255)
_NAME = re.compile(r"^(?P<scene>\d{2}_.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")
_IMAGE_TAG = "_leftImg8bit"
_LABEL_TAG = "_gtCoarse_labelIds.png"


def to_ood(label_ids: np.ndarray) -> np.ndarray:
    """Lost&Found gtCoarse labelIds -> 0 inlier (free space) / 1 anomaly (obstacle) / 255 ignore."""
    return _LABEL_TO_OOD[label_ids]


def _records(root: Path, split: str, skip_bad: bool) -> list[FrameRecord]:
    image_dir = require_dir(root / "leftImg8bit" / split, "Lost&Found leftImg8bit/" + split)
    label_dir = root / "gtCoarse" / split
    keyed: list[tuple[tuple[str, int, int], FrameRecord]] = []
    for path in sorted(image_dir.glob(f"*/*{_IMAGE_TAG}.*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        fid = path.name[: path.name.index(_IMAGE_TAG)]
        match = _NAME.match(fid)
        if match is None:
            message = f"Lost&Found image name not <NN_scene>_<seq>_<frame>_leftImg8bit: {path}"
            if not skip_bad:
                raise DatasetError(message)
            log.warning("lostandfound: skipping %s", message)
            continue
        scene, seq, frame = match["scene"], int(match["seq"]), int(match["frame"])
        record = FrameRecord(
            image=path,
            label=label_dir / path.parent.name / f"{fid}{_LABEL_TAG}",
            name=path.stem,
            sequence=f"{scene}_{seq:06d}",
            index=frame,
        )
        keyed.append(((path.parent.name, seq, frame), record))
    if not keyed:
        raise DatasetError(f"no Lost&Found images (*/*{_IMAGE_TAG}.png) under {image_dir}")
    keyed.sort(key=lambda item: item[0])
    return [record for _, record in keyed]


def _without_known(records: list[FrameRecord], skip_bad: bool) -> list[FrameRecord]:
    known = np.zeros(256, dtype=bool)
    known[list(KNOWN_OBJECT_IDS)] = True
    kept = []
    for record in tqdm(records, desc="lostandfound no-known scan", unit="label", leave=False):
        assert record.label is not None
        try:
            present = np.bincount(read_label(record.label).reshape(-1), minlength=256) > 0
        except DatasetError as error:
            if not skip_bad:
                raise
            log.warning("lostandfound: skipping frame %s: %s", record.name, error)
            continue
        if present[known].any() or not present[1:].any():
            continue
        kept.append(record)
    log.info("lostandfound no-known: kept %d of %d frames", len(kept), len(records))
    return kept


class LostAndFound(FileDataset):
    """The Lost&Found benchmark (obstacle-style). See the module docstring for layout and subsets."""

    def __init__(
        self, root: Path, *, split: str = "test", subset: str = "all", skip_bad: bool = False
    ) -> None:
        """Discover the frames of one split.

        Args:
            root: folder containing ``leftImg8bit/`` and ``gtCoarse/``.
            split: ``test`` or ``train``.
            subset: ``all`` or ``no-known``.
            skip_bad: skip frames with missing/corrupt files (warning) instead of raising.

        Raises:
            DatasetError: bad option value, missing folders, no images, or (without ``skip_bad``) a
                frame whose label file is missing.
        """
        if split not in SPLITS:
            raise DatasetError(f"lostandfound split {split!r} unknown; valid: {', '.join(SPLITS)}")
        if subset not in SUBSETS:
            raise DatasetError(f"lostandfound subset {subset!r} unknown; valid: {', '.join(SUBSETS)}")
        records = _records(Path(root), split, skip_bad)
        super().__init__(
            format_name="lostandfound",
            root=Path(root),
            kind="obstacle",
            records=records,
            convert=to_ood,
            skip_bad=skip_bad,
        )
        self.split: str = split
        self.subset: str = subset
        if subset == "no-known":
            self.records = _without_known(self.records, skip_bad)
