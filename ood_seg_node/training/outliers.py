# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Outlier exposure: objects pasted into inlier scenes, from pluggable outlier sources.

Outlier-exposure heads (RPL, NFlowJS) paste unknown objects into training images so that the pasted pixels
can be trained as anomalies; RPL's CoroCL also contrasts them with outliers seen in the source's *own*
context. A source therefore offers two things:

- ``sample(rng)``: one object cut-out, an RGB crop and a bool mask tight around the object;
- ``context(rng, height, width)``: a whole image in the source's own context with its labels
  (1 = object, 0 = the context around it, 255 = ignore).

Two sources exist: :class:`FolderOutliers` reads a folder of images with object masks in a COCO-like
layout (the papers paste COCO objects), and :class:`ProceduralOutliers` (the default, as no data set can be
downloaded here) draws objects with the synthetic world's obstacle generator and places them in a
procedural non-road context (smooth random colour fields with grain), since generated objects have no
natural context of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import cv2
import numpy as np
import torch

from ood_seg_node.cityscapes import IGNORE_INDEX, OOD_ANOMALY

# pasted object height as a fraction of the image height: mostly small, as Lost&Found obstacles are
DEFAULT_SCALES: tuple[float, ...] = (0.04, 0.06, 0.08, 0.1, 0.14, 0.2)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class OutlierError(RuntimeError):
    """An outlier source cannot be read (missing folder, image without mask, empty mask)."""


class OutlierSource(Protocol):
    """Where pasted objects come from (see the module docstring)."""

    name: str

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One object: (h, w, 3) uint8 RGB crop and (h, w) bool mask tight around it."""
        ...

    def context(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """A (height, width, 3) uint8 image in the source's own context and (height, width) uint8 labels."""
        ...


class ProceduralOutliers:
    """Objects from the synthetic world's obstacle generator; contexts are procedural non-road scenes.

    Args:
        patch_size: (min, max) side in pixels of the generated patches (they are rescaled when pasted).
        context_objects: (min, max) objects placed in each context image.
    """

    name = "procedural"

    def __init__(
        self, patch_size: tuple[int, int] = (48, 96), context_objects: tuple[int, int] = (2, 5)
    ) -> None:
        from ood_seg_node.datasets.synthetic import make_obstacle_patch

        self._make = make_obstacle_patch
        self.patch_size = patch_size
        self.context_objects = context_objects

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One generated obstacle cropped to its mask."""
        low, high = self.patch_size
        rgb, mask = self._make(rng, int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1)))
        return crop_to_mask(np.asarray(rgb, dtype=np.uint8), np.asarray(mask, dtype=bool), "procedural patch")

    def context(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """A random colour field with a few generated obstacles on it."""
        canvas = _random_field(rng, height, width)
        labels = np.zeros((height, width), np.uint8)
        count = int(rng.integers(self.context_objects[0], self.context_objects[1] + 1))
        for _ in range(count):
            rgb, mask = self.sample(rng)
            scale = float(rng.uniform(0.15, 0.45)) * height / rgb.shape[0]
            rgb, mask = _resize_object(rgb, mask, scale)
            _paste_numpy(canvas, labels, rgb, mask, rng)
        return canvas, labels


def _random_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour field with grain: a generic scene that is neither road nor any world class."""
    grid = rng.uniform(0, 255, size=(int(rng.integers(2, 6)), int(rng.integers(2, 8)), 3)).astype(np.float32)
    field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = rng.normal(0.0, float(rng.uniform(3, 20)), size=(height, width, 1)).astype(np.float32)
    return np.clip(field + grain, 0, 255).astype(np.uint8)


class FolderOutliers:
    """Objects from a folder of images with masks, in one of two COCO-like layouts.

    - ``<root>/images/<stem>.jpg|png`` with ``<root>/masks/<stem>.png``;
    - RPL's COCO proxy layout ``<root>/annotations/ood_seg_<split>/<stem>.png`` with
      ``<root>/<split>/<stem>.jpg`` (``split`` e.g. ``train2017``).

    A mask is single-channel; every non-zero pixel belongs to the object(s) (0/255 binary masks and RPL's
    254 labels both work). ``sample`` crops the image to the masks' bounding box, as RPL does.
    """

    name = "folder"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise OutlierError(f"outlier folder not found: {self.root}")
        self.pairs = self._discover()
        if not self.pairs:
            raise OutlierError(
                f"no image/mask pairs in {self.root} (expected images/<stem>.jpg + masks/<stem>.png, or "
                "annotations/ood_seg_<split>/<stem>.png + <split>/<stem>.jpg)"
            )

    def _discover(self) -> list[tuple[Path, Path]]:
        pairs: list[tuple[Path, Path]] = []
        if (self.root / "masks").is_dir():
            pairs += [(image, mask) for mask in sorted((self.root / "masks").glob("*.png"))
                      if (image := _find_image(self.root / "images", mask.stem)) is not None]
        annotations = self.root / "annotations"
        if annotations.is_dir():
            for folder in sorted(annotations.glob("ood_seg_*")):
                split = folder.name.removeprefix("ood_seg_")
                pairs += [(image, mask) for mask in sorted(folder.glob("*.png"))
                          if (image := _find_image(self.root / split, mask.stem)) is not None]
        return pairs

    def _load(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, Path]:
        image_path, mask_path = self.pairs[int(rng.integers(len(self.pairs)))]
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise OutlierError(f"cannot read {image_path if image is None else mask_path}")
        if image.shape[:2] != mask.shape:
            raise OutlierError(f"{mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                               f"{image.shape[1]}x{image.shape[0]}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), mask > 0, mask_path

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random file's objects, cropped to their bounding box."""
        rgb, mask, path = self._load(rng)
        return crop_to_mask(rgb, mask, str(path))

    def context(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """A random file's whole image, resized to cover (height, width) and centre-cropped."""
        rgb, mask, _ = self._load(rng)
        # scale to cover (height, width), then centre-crop: the object keeps its own surroundings
        scale = max(height / rgb.shape[0], width / rgb.shape[1])
        size = (max(width, round(rgb.shape[1] * scale)), max(height, round(rgb.shape[0] * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST)
        top, left = (size[1] - height) // 2, (size[0] - width) // 2
        rgb = rgb[top:top + height, left:left + width]
        labels = (mask[top:top + height, left:left + width] > 0).astype(np.uint8) * OOD_ANOMALY
        return np.ascontiguousarray(rgb), labels


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def crop_to_mask(rgb: np.ndarray, mask: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Crop an image and its bool mask to the mask's bounding box; an empty mask is an error."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise OutlierError(f"{what}: the object mask is empty")
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return np.ascontiguousarray(rgb[box]), np.ascontiguousarray(mask[box])


def _resize_object(rgb: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    height = max(2, round(rgb.shape[0] * scale))
    width = max(2, round(rgb.shape[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (width, height), interpolation=interpolation)
    mask = cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    return rgb, mask


def _paste_numpy(canvas: np.ndarray, labels: np.ndarray, rgb: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """Paste one object at a uniformly random position (cropped at the border); returns the pasted mask."""
    height, width = labels.shape
    rgb, mask = rgb[:height, :width], mask[:height, :width]
    top = int(rng.integers(0, height - mask.shape[0] + 1))
    left = int(rng.integers(0, width - mask.shape[1] + 1))
    window = (slice(top, top + mask.shape[0]), slice(left, left + mask.shape[1]))
    canvas[window][mask] = rgb[mask]
    labels[window][mask] = OOD_ANOMALY
    placed = np.zeros((height, width), bool)
    placed[window] = mask
    return placed


def paste_outliers(
    images: torch.Tensor,
    semantic: torch.Tensor,
    ood: torch.Tensor,
    source: OutlierSource,
    rng: np.random.Generator,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    per_image: tuple[int, int] = (1, 3),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste ``per_image`` (min, max) objects from ``source`` into each image of a batch.

    Each object is rescaled so that its height is ``scale * H`` for a scale drawn from ``scales``, and placed
    uniformly at random (as RPL places COCO objects). Pasted pixels become anomalies in ``ood`` and void
    (255) in ``semantic``.

    Args:
        images: (B, 3, H, W) float RGB in [0, 1].
        semantic: (B, H, W) integer trainIds (255 void).
        ood: (B, H, W) integer anomaly labels (0 / 1 / 255).
        source: where objects come from (:func:`ood_seg_node.training.real_data.outlier_source`).
        rng: numpy generator (placement, scale and object choice).
        scales: object height / image height choices.
        per_image: inclusive range of the number of objects per image.

    Returns:
        New (images, semantic, ood) tensors; the inputs are not modified.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"paste_outliers expects (B, 3, H, W) images, got shape {tuple(images.shape)}")
    if not scales or min(scales) <= 0:
        raise ValueError(f"paste_outliers needs positive scales, got {list(scales)}")
    height, width = images.shape[-2:]
    out_images = images.clone()
    out_semantic = semantic.clone()
    out_ood = ood.clone()
    for b in range(images.shape[0]):
        canvas = (images[b].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        labels = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(per_image[0], per_image[1] + 1))):
            rgb, mask = source.sample(rng)
            scale = float(scales[int(rng.integers(len(scales)))]) * height / rgb.shape[0]
            rgb, mask = _resize_object(rgb, mask, scale)
            _paste_numpy(canvas, labels, rgb, mask, rng)
        pasted = torch.from_numpy(labels == OOD_ANOMALY).to(images.device)
        # only pasted pixels are rewritten, so every other pixel keeps its exact original value
        out_images[b] = torch.where(
            pasted[None], torch.from_numpy(canvas).permute(2, 0, 1).to(images) / 255.0, images[b]
        )
        out_semantic[b][pasted] = IGNORE_INDEX
        out_ood[b][pasted] = OOD_ANOMALY
    return out_images, out_semantic, out_ood


def context_batch(
    source: OutlierSource, rng: np.random.Generator, count: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` context images as (count, 3, H, W) float in [0, 1] and (count, H, W) long labels."""
    images, labels = [], []
    for _ in range(count):
        rgb, label = source.context(rng, height, width)
        images.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
        labels.append(torch.from_numpy(label.astype(np.int64)))
    return torch.stack(images).float() / 255.0, torch.stack(labels)


__all__ = [
    "DEFAULT_SCALES", "FolderOutliers", "OutlierError", "OutlierSource", "ProceduralOutliers",
    "context_batch", "crop_to_mask", "paste_outliers",
]
