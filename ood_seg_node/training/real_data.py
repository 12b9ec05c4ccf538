# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Real training data for the trainers: a dataset spec and an outlier spec -> lazy frame sequences.

:func:`training_sources` turns ``--data``-style specs into what a trainer needs::

    sources = training_sources("cityscapes:/data/cityscapes", "coco:/data/coco", height=256, width=512)
    if sources is None: ...                     # "synthetic": the trainer renders its synthetic world
    frame = sources.train[0]                    # a Frame, read from disk and resized on access
    sources.val, sources.outliers, sources.label_space

Dataset specs (``docs/training_data.md`` has the layouts):

==========================  ===========================================  ==========================================
spec                        training frames                              validation frames
==========================  ===========================================  ==========================================
``synthetic``               None is returned: the synthetic path stays   --
``cityscapes:<root>``       ``train`` split, trainIds                    ``val`` split + pasted outliers
``streethazards:<root>``    ``training`` split, its 13 classes           ``validation`` split + pasted outliers
``bdd-anomaly:<root>``      ``training`` split (no train/moto/bicycle)   ``validation`` split + pasted outliers
==========================  ===========================================  ==========================================

Outlier specs: ``procedural`` (or empty), ``coco:<root>`` (:class:`~.coco_outliers.CocoOutliers`),
``folder:<path>`` or a bare folder path (:class:`~.outliers.FolderOutliers`).

Every frame is resized to (height, width) when it is accessed (area interpolation for the image, nearest
for the labels; the aspect ratio is not kept), so that trainers can batch frames of any dataset; nothing is
held in memory. None of the validation splits has anomalies, yet checkpoint selection and thresholds need
them: each validation frame gets 1-3 outlier-source objects pasted (after resizing), from a generator seeded
by ``(seed, frame index)``, so validation is the same on every access, every epoch and every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import cv2
import numpy as np
import torch

from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.training.outliers import (
    DEFAULT_SCALES,
    FolderOutliers,
    OutlierSource,
    ProceduralOutliers,
    paste_outliers,
)

DATASETS: tuple[str, ...] = ("synthetic", "cityscapes", "streethazards", "bdd-anomaly")
VAL_SEED = 1000  # validation pasting seeds are disjoint from the usual training seeds (0, 1, ...)


class FrameSequence(Protocol):
    """What trainers index: ``len()`` and ``frames[i]`` -> Frame."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Frame: ...


@dataclass
class TrainingSources:
    """What :func:`training_sources` returns.

    Attributes:
        train: training frames (inliers), lazily read and resized to (height, width).
        val: validation frames with pasted outliers, lazily read, resized, deterministic.
        outliers: the outlier source for training-time pasting and CoroCL contexts.
        label_space: the class set of ``semantic`` (``cityscapes`` or ``streethazards``).
        dataset: the dataset spec's format name.
    """

    train: FrameSequence
    val: FrameSequence
    outliers: OutlierSource
    label_space: str
    dataset: str


class _Frames:
    """Shared sequence plumbing: ``len``, bounds-checked (negative-aware) indexing, iteration."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _get(self, index: int) -> Frame:
        raise NotImplementedError

    def __getitem__(self, index: int | slice) -> Frame | list[Frame]:
        if isinstance(index, slice):  # as a list slices: e.g. every k-th frame for a statistic
            return [self._get(i) for i in range(*index.indices(len(self)))]
        length = len(self)
        if not -length <= index < length:
            raise IndexError(f"frame {index} out of range 0..{length - 1}")
        return self._get(index % length)

    def __iter__(self) -> Iterator[Frame]:
        for index in range(len(self)):
            yield self._get(index)


class Subset(_Frames):
    """``count`` frames of ``base`` spread evenly over it (all of them when ``count`` is None or larger)."""

    def __init__(self, base: FrameSequence, count: int | None) -> None:
        total = len(base)
        if count is None or count >= total:
            self.indices = list(range(total))
        else:
            if count <= 0:
                raise ValueError(f"a frame limit must be positive, got {count}")
            self.indices = np.linspace(0, total - 1, count).round().astype(int).tolist()
        self.base = base

    def __len__(self) -> int:
        return len(self.indices)

    def _get(self, index: int) -> Frame:
        return self.base[self.indices[index]]


def resize_frame(frame: Frame, height: int, width: int) -> Frame:
    """``frame`` at (height, width): area interpolation for the image, nearest for the label maps."""
    if frame.image.shape[:2] == (height, width):
        return frame

    def nearest(labels: np.ndarray | None) -> np.ndarray | None:
        if labels is None:
            return None
        return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)

    image = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA)
    return Frame(image=image, ood_gt=nearest(frame.ood_gt), semantic=nearest(frame.semantic), name=frame.name,
                 sequence=frame.sequence, index=frame.index, label_space=frame.label_space)


class Resized(_Frames):
    """``base``'s frames resized to (height, width) on access (see :func:`resize_frame`)."""

    def __init__(self, base: FrameSequence, height: int, width: int) -> None:
        if height <= 0 or width <= 0:
            raise ValueError(f"training size must be positive, got {height}x{width}")
        self.base, self.height, self.width = base, int(height), int(width)

    def __len__(self) -> int:
        return len(self.base)

    def _get(self, index: int) -> Frame:
        return resize_frame(self.base[index], self.height, self.width)


class WithOutliers(_Frames):
    """``base``'s frames with ``per_image`` objects of ``source`` pasted, seeded by ``(seed, index)``.

    Pasted pixels become anomalies (``ood_gt`` 1) and void in ``semantic``, as in training. The same index
    always gives the same frame.
    """

    def __init__(self, base: FrameSequence, source: OutlierSource, *, seed: int = VAL_SEED,
                 scales: Sequence[float] = DEFAULT_SCALES, per_image: tuple[int, int] = (1, 3)) -> None:
        self.base, self.source, self.seed = base, source, int(seed)
        self.scales, self.per_image = tuple(scales), per_image

    def __len__(self) -> int:
        return len(self.base)

    def _get(self, index: int) -> Frame:
        frame = self.base[index]
        rng = np.random.default_rng([self.seed, index])
        image = torch.from_numpy(np.ascontiguousarray(frame.image)).permute(2, 0, 1)[None].float() / 255.0
        height, width = frame.image.shape[:2]
        semantic = frame.semantic if frame.semantic is not None else np.full((height, width), 255, np.uint8)
        ood = frame.ood_gt if frame.ood_gt is not None else np.zeros((height, width), np.uint8)
        images, semantic_t, ood_t = paste_outliers(
            image, torch.from_numpy(semantic.astype(np.int64))[None], torch.from_numpy(ood.astype(np.int64))[None],
            self.source, rng, scales=self.scales, per_image=self.per_image)
        rgb = (images[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
        return Frame(image=np.ascontiguousarray(rgb), ood_gt=ood_t[0].numpy().astype(np.uint8),
                     semantic=semantic_t[0].numpy().astype(np.uint8), name=frame.name, sequence=frame.sequence,
                     index=frame.index, label_space=frame.label_space)


def outlier_source(spec: str, *, seed: int = 0) -> OutlierSource:
    """``procedural`` / empty, ``coco:<root>``, ``folder:<path>`` or a bare folder path -> an outlier source.

    Raises:
        ValueError: an empty ``coco:`` / ``folder:`` path.
        OutlierError: the folder or its files cannot be read.
    """
    text = spec.strip()
    if text in ("", "procedural"):
        return ProceduralOutliers()
    kind, sep, rest = text.partition(":")
    if sep and kind.lower() in ("coco", "folder"):
        if not rest.strip():
            raise ValueError(f"outlier spec {spec!r} needs a folder: {kind.lower()}:<root>")
        if kind.lower() == "coco":
            from ood_seg_node.training.coco_outliers import CocoOutliers

            return CocoOutliers(rest.strip(), rng_seed=seed)
        return FolderOutliers(rest.strip())
    return FolderOutliers(text)


def parse_training_dataset(spec: str) -> tuple[str, str]:
    """``<format>:<root>`` -> (format, root); ``synthetic`` has no root.

    Raises:
        ValueError: an empty spec, an unknown format (the message lists the valid ones) or a missing root.
    """
    name, _, root = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in DATASETS:
        raise ValueError(f"unknown training dataset {spec!r}; valid: synthetic, cityscapes:<root>, "
                         "streethazards:<root>, bdd-anomaly:<root>")
    if name != "synthetic" and not root.strip():
        raise ValueError(f"training dataset {name!r} needs a root folder: {name}:<root>")
    return name, root.strip()


def _splits(name: str, root: Path) -> tuple[FrameSequence, FrameSequence, str]:
    if name == "cityscapes":
        from ood_seg_node.datasets.cityscapes_train import CityscapesTrain

        train, val = CityscapesTrain(root, split="train"), CityscapesTrain(root, split="val")
    elif name == "streethazards":
        from ood_seg_node.datasets.streethazards import StreetHazards

        train, val = StreetHazards(root, split="training"), StreetHazards(root, split="validation")
    else:
        from ood_seg_node.datasets.bdd_anomaly import BDDAnomaly

        train, val = BDDAnomaly(root, split="training"), BDDAnomaly(root, split="validation")
    return train, val, train.label_space


def training_sources(
    dataset: str,
    outliers: str = "procedural",
    *,
    height: int,
    width: int,
    seed: int = 0,
    max_train: int | None = None,
    max_val: int | None = None,
) -> TrainingSources | None:
    """Open a real dataset's training and validation frames and an outlier source.

    Args:
        dataset: ``synthetic``, ``cityscapes:<root>``, ``streethazards:<root>`` or ``bdd-anomaly:<root>``.
        outliers: ``procedural``, ``coco:<root>``, ``folder:<path>`` or a folder path.
        height: training frame height (frames are resized on access).
        width: training frame width.
        seed: seed of the outlier source's subsampling and of the validation pasting.
        max_train: use at most this many training frames, spread evenly (None: all).
        max_val: the same for validation frames.

    Returns:
        None for ``synthetic`` (the trainer keeps its synthetic frames), else :class:`TrainingSources`.

    Raises:
        ValueError: a malformed spec or a non-positive size or limit.
        DatasetError: the dataset's folders or files are missing or in the wrong layout.
        OutlierError: the outlier source cannot be read.
    """
    name, root = parse_training_dataset(dataset)
    if name == "synthetic":
        return None
    if height <= 0 or width <= 0:
        raise ValueError(f"training size must be positive, got {height}x{width}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{name} root directory missing: {path}")
    train, val, label_space = _splits(name, path)
    source = outlier_source(outliers, seed=seed)
    return TrainingSources(
        train=Resized(Subset(train, max_train), height, width),
        val=WithOutliers(Resized(Subset(val, max_val), height, width), source, seed=VAL_SEED + seed),
        outliers=source,
        label_space=label_space,
        dataset=name,
    )


__all__ = [
    "DATASETS", "FrameSequence", "Resized", "Subset", "TrainingSources", "WithOutliers", "outlier_source",
    "parse_training_dataset", "resize_frame", "training_sources",
]
