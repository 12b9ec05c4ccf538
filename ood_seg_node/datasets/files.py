# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What every file-based benchmark loader shares: reading images and label maps, and lazy frame lists.

A loader only has to discover its files (a list of :class:`FrameRecord`) and say how its label values
map to the package convention (0 inlier / 1 anomaly / 255 ignore). :class:`FileDataset` then reads one
frame per ``__getitem__``, turns any unreadable or inconsistent file into a one-line
:class:`~ood_seg_node.datasets.base.DatasetError` naming the file, and with ``skip_bad`` drops such
frames with a logged warning instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.label_spaces import CITYSCAPES

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")


def read_rgb(path: Path) -> np.ndarray:
    """Read a colour image as HxWx3 uint8 RGB.

    Raises:
        DatasetError: the file is missing, unreadable or not an 8-bit image.
    """
    if not path.is_file():
        raise DatasetError(f"image file missing: {path}")
    # cv2.imread returns None (no exception) on corrupt or truncated files.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise DatasetError(f"cannot decode image file {path}")
    if bgr.dtype != np.uint8:
        raise DatasetError(f"image file {path} is not 8-bit ({bgr.dtype})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel label map (raw values, palette indices for palette PNGs) as HxW uint8.

    PIL rather than OpenCV: OpenCV expands palette PNGs to colours, losing the label indices.

    Raises:
        DatasetError: the file is missing, unreadable, multi-channel with differing channels, or holds
            values above 255.
    """
    if not path.is_file():
        raise DatasetError(f"label file missing: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.array(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DatasetError(f"cannot decode label file {path}: {error}") from None
    if values.ndim == 3:
        # Some re-encoded label maps store the class id replicated in R, G and B.
        channels = range(1, min(3, values.shape[2]))
        if not all(np.array_equal(values[:, :, 0], values[:, :, c]) for c in channels):
            raise DatasetError(f"label file {path} is a colour image (mode {mode}), expected label ids")
        values = values[:, :, 0]
    if values.ndim != 2 or values.size == 0:
        raise DatasetError(f"label file {path} has unexpected shape {values.shape}")
    if values.dtype != np.uint8:
        if values.dtype == bool:
            values = values.astype(np.uint8)
        elif values.size and (values.min() < 0 or values.max() > 255):
            raise DatasetError(f"label file {path} holds values outside 0..255 (mode {mode})")
        else:
            values = values.astype(np.uint8)
    return values


def find_image(directory: Path, stem: str) -> Path | None:
    """The first ``<directory>/<stem><suffix>`` that exists for the usual image suffixes."""
    for suffix in IMAGE_SUFFIXES:
        candidate = directory / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a DatasetError saying which layout part is missing."""
    if not path.is_dir():
        raise DatasetError(f"{what} directory missing: {path}")
    return path


def lut(mapping: dict[int, int], default: int) -> np.ndarray:
    """A 256-entry uint8 lookup table: ``mapping[value]`` where given, ``default`` elsewhere."""
    table = np.full(256, default, dtype=np.uint8)
    for value, target in mapping.items():
        table[value] = target
    return table


@dataclass(frozen=True)
class FrameRecord:
    """Where one frame's files are; nothing is read until the frame is requested."""

    image: Path
    label: Path | None
    name: str
    sequence: str = ""
    index: int = 0


class FileDataset:
    """A lazily loaded list of :class:`FrameRecord` turned into :class:`Frame` objects.

    Attributes:
        format_name: the registry name (``lostandfound``, ...), for messages.
        root: dataset root directory.
        kind: ``"obstacle"`` or ``"anomaly"``: which SMIYC component size filters apply.
        has_semantic: whether frames carry class ids (``semantic``), in ``label_space``.
        label_space: the class set of those ids.
        records: the discovered frames, in evaluation order.
        skip_bad: skip (with a warning) instead of raising on missing or corrupt files.
        camera: None: intrinsics are not read from the benchmark files.
    """

    has_semantic: bool = False
    label_space: str = CITYSCAPES.name

    def __init__(
        self,
        *,
        format_name: str,
        root: Path,
        kind: str,
        records: Sequence[FrameRecord],
        convert: Callable[[np.ndarray], np.ndarray],
        skip_bad: bool = False,
        label_required: bool = True,
        semantic: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.format_name: str = format_name
        self.root: Path = root
        self.kind: str = kind
        self.skip_bad: bool = skip_bad
        self.camera: object | None = None
        self._convert: Callable[[np.ndarray], np.ndarray] = convert
        self._semantic = semantic
        self.has_semantic = semantic is not None
        self.records: list[FrameRecord] = self._check_files(records, label_required)

    def _check_files(self, records: Sequence[FrameRecord], label_required: bool) -> list[FrameRecord]:
        kept: list[FrameRecord] = []
        for record in records:
            problem = None
            if not record.image.is_file():
                problem = f"image file missing: {record.image}"
            elif label_required and (record.label is None or not record.label.is_file()):
                problem = f"label file missing: {record.label}"
            if problem is None:
                kept.append(record)
            elif self.skip_bad:
                log.warning("%s: skipping frame %s: %s", self.format_name, record.name, problem)
            else:
                raise DatasetError(problem)
        return kept

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.format_name}:{self.root}, {len(self)} frames, kind={self.kind})"

    @staticmethod
    def read_files(record: FrameRecord) -> tuple[np.ndarray, np.ndarray | None]:
        """The record's RGB image and raw label map (None without a label file), of one size.

        Raises:
            DatasetError: a file is missing or corrupt, or image and label sizes differ.
        """
        image = read_rgb(record.image)
        if record.label is None:
            return image, None
        raw = read_label(record.label)
        if raw.shape != image.shape[:2]:
            raise DatasetError(f"label file {record.label} is {raw.shape[1]}x{raw.shape[0]}, "
                               f"its image is {image.shape[1]}x{image.shape[0]}")
        return image, raw

    def load(self, record: FrameRecord) -> Frame:
        """Read one record's files and convert its labels.

        Raises:
            DatasetError: a file is missing or corrupt, or image and label sizes differ.
        """
        image, raw = self.read_files(record)
        ood_gt = semantic = None
        if raw is not None:
            ood_gt = self._convert(raw)
            semantic = self._semantic(raw) if self._semantic is not None else None
        return Frame(
            image=image,
            ood_gt=ood_gt,
            semantic=semantic,
            name=record.name,
            sequence=record.sequence,
            index=record.index,
            label_space=self.label_space,
        )

    def __getitem__(self, index: int) -> Frame:
        """Load frame ``index`` (always raises on a corrupt file; ``skip_bad`` applies to iteration)."""
        return self.load(self.records[index])

    def __iter__(self) -> Iterator[Frame]:
        for record in self.records:
            try:
                yield self.load(record)
            except DatasetError as error:
                if not self.skip_bad:
                    raise
                log.warning("%s: skipping frame %s: %s", self.format_name, record.name, error)
