# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""BDD-Anomaly (Hendrycks et al., "Scaling Out-of-Distribution Detection for Real-World Settings", ICML 2022).

The real-image half of the anomaly-seg benchmark: BDD100K's 10K segmentation set (Yu et al., CVPR 2020),
19 Cityscapes trainIds, with three classes held out as anomalies. Layout, as BDD100K releases it (the
anomaly-seg repository ships the same label files under ``seg/labels/``)::

    <root>/seg/images/{train,val}/<id>.jpg
    <root>/seg/labels/{train,val}/<id>_train_id.png         trainIds 0-18, 255 void

``<root>`` is the folder holding ``seg/`` (BDD100K's ``bdd100k/``), or its parent. The anomaly-seg
repository also ships ``seg/train_labels/{train,val}/<id>_train_id.png``, the same maps shifted for its
ADE20K-style loader (value = trainId + 2, void = 1); they are read when ``seg/labels/`` is absent.

The split follows ``create_bdd_dataset.py`` of hendrycks/anomaly-seg (``create_odgt``): it reads the
shifted maps and calls an image anomalous when it holds the values 18, 19 or 20, i.e. trainIds 16, 17 and
18: **train, motorcycle and bicycle** (the paper's text names motorcycle and train; the code also holds
out bicycle, and the code is followed here). Then

* ``training``: ``train`` images with none of the three classes (its ``train.odgt``);
* ``validation``: ``val`` images with none of them (its ``validation.odgt``);
* ``test``: every ``train`` then ``val`` image holding one of them (its ``anom.odgt``).

Finding the split reads every label map of the folders once, when the dataset is opened (about 8000
PNGs for the full set); frames are read lazily afterwards.

Frames: ``semantic`` = trainIds in the Cityscapes label space with the three anomaly classes void (255),
so that no training frame teaches them. ``ood_gt``: in ``training`` and ``validation`` 0 on every class
pixel and 255 on void (inlier sets); in ``test`` 1 on the anomaly classes and 0 everywhere else, as the
official ``eval_ood.py`` scores every pixel (void included) as in-distribution. ``kind = "anomaly"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY, OOD_INLIER, TRAIN_ID
from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.datasets.files import FileDataset, FrameRecord, lut, read_label, require_dir
from ood_seg_node.label_spaces import CITYSCAPES

SPLITS: tuple[str, ...] = ("training", "validation", "test")
ANOMALY_CLASSES: tuple[str, ...] = ("train", "motorcycle", "bicycle")
ANOMALY_TRAIN_IDS: tuple[int, ...] = tuple(TRAIN_ID[name] for name in ANOMALY_CLASSES)
LABEL_SUFFIX = "_train_id.png"
SHIFTED = "train_labels"  # anomaly-seg's shifted copies (trainId + 2, void 1)
SHIFT = 2

_RAW = lut({value: value for value in range(CITYSCAPES.num_classes)}, IGNORE_INDEX)
_UNSHIFT = lut({value + SHIFT: value for value in range(CITYSCAPES.num_classes)}, IGNORE_INDEX)
_SEMANTIC = lut({value: value for value in range(CITYSCAPES.num_classes) if value not in ANOMALY_TRAIN_IDS},
                IGNORE_INDEX)
_IS_ANOMALY = lut(dict.fromkeys(ANOMALY_TRAIN_IDS, 1), 0).astype(bool)


def train_ids(raw: np.ndarray, *, shifted: bool) -> np.ndarray:
    """A label file's values -> trainIds 0-18 (255 void); ``shifted`` for anomaly-seg's ``train_labels``."""
    return (_UNSHIFT if shifted else _RAW)[raw]


def has_anomaly(ids: np.ndarray) -> bool:
    """Whether a trainId map holds a held-out class (train, motorcycle, bicycle)."""
    return bool(_IS_ANOMALY[ids].any())


def _seg_folder(root: Path) -> Path:
    for candidate in (root / "seg", root / "bdd100k" / "seg"):
        if (candidate / "images").is_dir():
            return candidate
    raise DatasetError(f"BDD-Anomaly layout not found under {root}: expected seg/images/{{train,val}}/ "
                       f"(BDD100K's 10K segmentation set)")


class BDDAnomaly(FileDataset):
    """A BDD-Anomaly split (see the module docstring) with Cityscapes trainIds as ``semantic``."""

    label_space = CITYSCAPES.name

    def __init__(self, root: str | Path, *, split: str = "training", skip_bad: bool = False) -> None:
        """Discover the frames and sort them into the official split (reads every label map once).

        Args:
            root: the folder holding ``seg/``, or its parent.
            split: ``training``, ``validation`` or ``test`` (the anomaly images).
            skip_bad: skip images without a label (warning) instead of raising.

        Raises:
            DatasetError: unknown split, layout not found, no images, an image without its label, or an
                unreadable label map.
        """
        if split not in SPLITS:
            raise DatasetError(f"unknown BDD-Anomaly split {split!r}; valid: {', '.join(SPLITS)}")
        root = Path(root).expanduser()
        seg = _seg_folder(root)
        labels = seg / "labels" if (seg / "labels").is_dir() else seg / SHIFTED
        require_dir(labels, "BDD-Anomaly labels (seg/labels)")
        self.shifted: bool = labels.name == SHIFTED
        folders = {"training": ("train",), "validation": ("val",), "test": ("train", "val")}[split]
        records: list[FrameRecord] = []
        for folder in folders:
            images = require_dir(seg / "images" / folder, f"BDD-Anomaly images (seg/images/{folder})")
            label_dir = require_dir(labels / folder, f"BDD-Anomaly labels ({labels.name}/{folder})")
            for image in sorted(images.glob("*.jpg")):
                label = label_dir / f"{image.stem}{LABEL_SUFFIX}"
                if not label.is_file():
                    if skip_bad:
                        continue
                    raise DatasetError(f"BDD-Anomaly image {image} has no label {label}")
                if has_anomaly(train_ids(read_label(label), shifted=self.shifted)) == (split == "test"):
                    records.append(FrameRecord(image=image, label=label, name=image.stem, sequence=folder,
                                               index=len(records)))
        if not records:
            raise DatasetError(f"no BDD-Anomaly {split} images under {seg / 'images'}")
        super().__init__(format_name="bdd-anomaly", root=root, kind="anomaly", records=records,
                         convert=lambda raw: raw, skip_bad=skip_bad)
        self.split: str = split

    def load(self, record: FrameRecord) -> Frame:
        """Read one frame and convert its labels (see the module docstring).

        Raises:
            DatasetError: a file is missing or corrupt, or the label's size differs from the image's.
        """
        image, raw = self.read_files(record)
        ids = train_ids(raw, shifted=self.shifted)
        semantic = _SEMANTIC[ids]
        if self.split == "test":
            ood = np.where(_IS_ANOMALY[ids], OOD_ANOMALY, OOD_INLIER).astype(np.uint8)
        else:
            ood = np.where(semantic == IGNORE_INDEX, IGNORE_INDEX, OOD_INLIER).astype(np.uint8)
        return Frame(image=image, ood_gt=ood, semantic=semantic, name=record.name, sequence=record.sequence,
                     index=record.index, label_space=self.label_space)
