# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Cityscapes (Cordts et al., CVPR 2016) for training: fine annotations as Cityscapes trainIds, no anomalies.

Layout of the released ``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip``, unpacked side by
side::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (cityscapesScripts output)
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (as released)

``split`` is ``train`` or ``val`` (``test`` has no public labels). A frame's ``_labelTrainIds.png`` is used
when it exists (written by cityscapesScripts' ``createTrainIdLabelImgs.py``); otherwise its released
``_labelIds.png`` is converted with the official table of cityscapesScripts' ``helpers/labels.py``: the 34
label ids 0-33 map to the 19 trainIds 0-18 or to 255 (void).

Frames are an inlier set: ``semantic`` holds the trainIds (255 void) and ``ood_gt`` is 0 wherever
``semantic`` is a class, 255 on void. Frames keep their full 2048x1024 size; resizing to a training size is
the caller's job (:mod:`ood_seg_node.training.real_data` resizes on access). Each city is a sequence,
ordered by sequence and frame number.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_INLIER
from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.datasets.files import FileDataset, FrameRecord, lut, require_dir
from ood_seg_node.label_spaces import CITYSCAPES

SPLITS: tuple[str, ...] = ("train", "val")
IMAGE_SUFFIX = "_leftImg8bit.png"
TRAIN_IDS_SUFFIX = "_gtFine_labelTrainIds.png"
LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"

# Cityscapes label id -> trainId, from the label definitions of cityscapesScripts (helpers/labels.py):
# road 7, sidewalk 8, building 11, wall 12, fence 13, pole 17, traffic light 19, traffic sign 20,
# vegetation 21, terrain 22, sky 23, person 24, rider 25, car 26, truck 27, bus 28, train 31,
# motorcycle 32, bicycle 33. Every other id (unlabeled 0 ... ground 6, parking 9, rail track 10,
# guard rail 14, bridge 15, tunnel 16, polegroup 18, caravan 29, trailer 30) is void.
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
    24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
_LABEL_IDS_TO_TRAIN_IDS = lut(LABEL_ID_TO_TRAIN_ID, IGNORE_INDEX)
# trainId files already hold 0-18 and 255; anything else there is void too
_TRAIN_IDS = lut({value: value for value in range(CITYSCAPES.num_classes)}, IGNORE_INDEX)
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d+)_(?P<frame>\d+)$")


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Released ``_labelIds`` values (0-33) -> trainIds (0-18, 255 void), the official mapping."""
    return _LABEL_IDS_TO_TRAIN_IDS[label_ids]


def inlier_ood(semantic: np.ndarray) -> np.ndarray:
    """Anomaly labels of an inlier frame: 0 where ``semantic`` is a class, 255 on void."""
    return np.where(semantic == IGNORE_INDEX, IGNORE_INDEX, OOD_INLIER).astype(np.uint8)


class CityscapesTrain(FileDataset):
    """A Cityscapes split with trainIds as ``semantic`` and an all-inlier ``ood_gt`` (see the module docstring)."""

    label_space = CITYSCAPES.name

    def __init__(self, root: str | Path, *, split: str = "train", skip_bad: bool = False) -> None:
        """Discover the frames (nothing is read yet).

        Args:
            root: the folder holding ``leftImg8bit/`` and ``gtFine/``.
            split: ``train`` or ``val``.
            skip_bad: skip frames with missing files (warning) instead of raising.

        Raises:
            DatasetError: unknown split, missing folder, no images, or an image without its label.
        """
        if split not in SPLITS:
            raise DatasetError(f"unknown Cityscapes split {split!r}; valid: {', '.join(SPLITS)}")
        root = Path(root).expanduser()
        require_dir(root, "Cityscapes root")
        images = require_dir(root / "leftImg8bit" / split, "Cityscapes images (leftImg8bit/<split>)")
        labels = require_dir(root / "gtFine" / split, "Cityscapes fine labels (gtFine/<split>)")
        records: list[FrameRecord] = []
        for city in sorted(path for path in images.iterdir() if path.is_dir()):
            for index, image in enumerate(sorted(city.glob(f"*{IMAGE_SUFFIX}"))):
                stem = image.name[: -len(IMAGE_SUFFIX)]
                match = _NAME.match(stem)
                train_ids = labels / city.name / f"{stem}{TRAIN_IDS_SUFFIX}"
                label = train_ids if train_ids.is_file() else labels / city.name / f"{stem}{LABEL_IDS_SUFFIX}"
                if not label.is_file() and not skip_bad:
                    raise DatasetError(f"Cityscapes image {image} has no label: neither {train_ids.name} nor "
                                       f"{label.name} in {label.parent}")
                records.append(FrameRecord(image=image, label=label, name=stem,
                                           sequence=match["city"] if match else city.name, index=index))
        if not records:
            raise DatasetError(f"no Cityscapes images (*{IMAGE_SUFFIX}) under {images}")
        super().__init__(format_name="cityscapes", root=root, kind="anomaly", records=records,
                         convert=inlier_ood, skip_bad=skip_bad)
        self.split: str = split

    def load(self, record: FrameRecord) -> Frame:
        """Read one frame; labelIds files are converted to trainIds.

        Raises:
            DatasetError: a file is missing or corrupt, or the label's size differs from the image's.
        """
        image, raw = self.read_files(record)
        table = _TRAIN_IDS if record.label.name.endswith(TRAIN_IDS_SUFFIX) else _LABEL_IDS_TO_TRAIN_IDS
        semantic = table[raw]
        return Frame(image=image, ood_gt=inlier_ood(semantic), semantic=semantic, name=record.name,
                     sequence=record.sequence, index=record.index, label_space=self.label_space)
