# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""COCO objects as outliers, read straight from the COCO release (no preprocessing step, no pycocotools).

Layout (the COCO 2017 release)::

    <root>/annotations/instances_<split>.json
    <root>/<split>/<file_name>                     e.g. train2017/000000000009.jpg

Protocol. RPL (Liu et al., ICCV 2023; ``rpl_corocl.code/dataset/training/coco.py`` and
``dataset/data_loader.py`` of yyliu01/RPL) reads the COCO proxy set that Meta-OoD prepares (Chan et al.,
ICCV 2021; ``preparation/prepare_coco_segmentation.py`` of robin-chan/meta-ood). That script:

1. drops every image holding an annotation (crowd or not) of a category Cityscapes also has:
   person, bicycle, car, motorcycle, bus, truck, traffic light, stop sign (:data:`EXCLUDED_CATEGORIES`;
   COCO's ``train`` is *not* in the official list and is kept here too);
2. keeps only images at least 480 pixels high and wide (``COCO.min_image_size``), among the files present
   in the image folder;
3. labels the union of all annotations of a kept image as the outlier (254), the rest as inlier (0).

RPL then subsamples the set to as many images as Cityscapes' training split (``proxy_size``), pastes the
union mask of one image, cut to its bounding box, at a uniformly random position of a Cityscapes crop
(``Preprocess.mix_object``), and uses the whole COCO image with its mask as the outlier *context* of CoroCL.
DenseHybrid (matejgrcic/DenseHybrid) pastes ADE20K instances instead of COCO ones; its negatives are not
COCO and its protocol does not apply here.

Here, steps 1-3 are done in memory from ``instances_<split>.json`` (parsed with :mod:`json`; polygons are
filled with ``cv2.fillPoly`` on a supersampled grid, uncompressed and compressed RLE are decoded by
:func:`rle_decode`), and:

* :meth:`CocoOutliers.context` returns a whole kept image, scaled to cover (height, width) and
  centre-cropped, with labels 1 on the union of its annotations and 0 elsewhere;
* :meth:`CocoOutliers.sample` returns **one instance** cut to its tight box (``unit="instance"``, the
  default, as :func:`~ood_seg_node.training.outliers.paste_outliers` rescales one object at a time), or,
  with ``unit="image"``, the union of an image's annotations cut to its box, exactly RPL's paste unit.

Deviations from the official code, all deliberate:

* per-instance sampling (the default) skips crowd regions and instances whose annotated ``area`` is below
  ``min_instance_area`` (default 1024 px, COCO's small/medium boundary), since one tiny fragment rescaled
  to a pasted-object height is not an object; the official union needs no such filter;
* images without any annotation are left out (their official mask is empty: RPL would paste nothing);
* contexts are scaled to cover the requested size; RPL centre-crops the COCO image at its own scale and
  pads it (label 255) when it is smaller;
* polygons are rasterised by half-pixel coverage, which may differ from pycocotools' rasteriser by a pixel
  along the boundary;
* ``proxy_size`` (None: every kept image) subsamples with a seeded shuffle, not an unseeded one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ood_seg_node.cityscapes import OOD_ANOMALY
from ood_seg_node.training.outliers import OutlierError, crop_to_mask

EXCLUDED_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "stop sign",
)
MIN_IMAGE_SIZE = 480
DEFAULT_MIN_INSTANCE_AREA = 32 * 32
UNITS = ("instance", "image")


# ---------------------------------------------------------------------------------------------- masks


def rle_string_to_counts(text: str) -> list[int]:
    """Decode COCO's compressed RLE string into run lengths.

    Each count is stored in 5-bit groups, least significant first, as characters ``48 + group``; bit 0x20
    of a group says another group follows, bit 0x10 of the last group is the sign. From the third count on,
    the stored value is the difference to the count two places before.
    """
    counts: list[int] = []
    position = 0
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise ValueError("truncated compressed RLE string")
            group = data[position] - 48
            if not 0 <= group < 64:
                raise ValueError(f"invalid character {chr(data[position])!r} in compressed RLE string")
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_counts_to_string(counts: Sequence[int]) -> str:
    """The inverse of :func:`rle_string_to_counts`: run lengths -> COCO's compressed RLE string."""
    out = []
    for i, count in enumerate(counts):
        value = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift: negative values end at -1
            more = value != -1 if group & 0x10 else value != 0
            if more:
                group |= 0x20
            out.append(chr(group + 48))
    return "".join(out)


def rle_decode(counts: Sequence[int] | str, size: Sequence[int]) -> np.ndarray:
    """An RLE (run lengths, or a compressed string) of an (h, w) mask -> (h, w) bool mask.

    Runs alternate 0 / 1 starting with 0, over the pixels in column-major order (COCO's convention).

    Raises:
        ValueError: the runs do not add up to h * w, or a run is negative.
    """
    height, width = int(size[0]), int(size[1])
    runs = np.asarray(rle_string_to_counts(counts) if isinstance(counts, (str, bytes)) else counts, np.int64)
    if runs.size and runs.min() < 0:
        raise ValueError("negative run length in RLE")
    if int(runs.sum()) != height * width:
        raise ValueError(f"RLE runs cover {int(runs.sum())} pixels, the mask has {height}x{width}")
    values = np.zeros(runs.size, bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape((width, height)).T


def rle_encode(mask: np.ndarray) -> list[int]:
    """(h, w) bool mask -> COCO run lengths (column-major, starting with a run of zeros)."""
    flat = np.asarray(mask, bool).T.reshape(-1)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return [int(run) for run in runs]


def polygons_to_mask(polygons: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (``[x1, y1, x2, y2, ...]`` each, pixel (0, 0) spanning [0, 1)^2) -> (h, w) bool mask.

    A pixel is set when the polygons cover at least half of it: they are filled with ``cv2.fillPoly`` on a
    4x supersampled grid of their bounding box (OpenCV alone rounds vertices to pixel centres and fills
    both edges, one pixel too wide), then each pixel's 16 samples vote.
    """
    mask = np.zeros((height, width), bool)
    shapes = [np.asarray(polygon, np.float64).reshape(-1, 2) for polygon in polygons if len(polygon) >= 6]
    if not shapes:
        return mask
    corners = np.concatenate(shapes)
    left, top = (max(0, int(np.floor(v))) for v in corners.min(axis=0))
    right, bottom = min(width, int(np.ceil(corners[:, 0].max()))), min(height, int(np.ceil(corners[:, 1].max())))
    if right <= left or bottom <= top:
        return mask
    factor, shift = 4, 3  # 4x4 samples per pixel; vertices at 1/8 sample precision
    canvas = np.zeros(((bottom - top) * factor, (right - left) * factor), np.uint8)
    # sample j of the grid sits at (j + 0.5) / factor in pixel units: its own centre is the integer j
    points = [np.round(((shape - (left, top)) * factor - 0.5) * (1 << shift)).astype(np.int32) for shape in shapes]
    cv2.fillPoly(canvas, points, 1, lineType=cv2.LINE_8, shift=shift)
    votes = canvas.reshape(bottom - top, factor, right - left, factor).sum(axis=(1, 3))
    mask[top:bottom, left:right] = votes * 2 >= factor * factor
    return mask


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons, uncompressed or compressed RLE) -> (h, w) bool mask.

    Raises:
        ValueError: an unknown segmentation form, or an RLE of another size than the image.
    """
    if isinstance(segmentation, list):
        return polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if tuple(int(v) for v in segmentation["size"]) != (height, width):
            raise ValueError(f"RLE size {segmentation['size']} differs from the image's {[height, width]}")
        return rle_decode(segmentation["counts"], segmentation["size"])
    raise ValueError(f"unknown COCO segmentation form {type(segmentation).__name__}")


# ----------------------------------------------------------------------------------------- the source


@dataclass(frozen=True)
class CocoImage:
    """A kept image: its file, size, every annotation's segmentation, and the instances ``sample`` draws."""

    path: Path
    height: int
    width: int
    segmentations: tuple[Any, ...]
    instances: tuple[int, ...]  # indices into ``segmentations``


class CocoOutliers:
    """COCO objects from images without Cityscapes classes (see the module docstring for the protocol).

    Args:
        root: the COCO folder (``annotations/`` and ``<split>/``).
        split: ``train2017`` (the papers') or ``val2017``.
        rng_seed: seed of the ``proxy_size`` subsampling.
        proxy_size: keep this many images (seeded random subset); None keeps all.
        unit: ``"instance"`` (one object per ``sample``) or ``"image"`` (RPL's union of an image's objects).
        min_instance_area: smallest annotated ``area`` an instance needs to be sampled (``unit="instance"``).
        min_image_size: smallest height and width of a kept image (Meta-OoD: 480).
        exclude: category names whose images are dropped.

    Raises:
        OutlierError: missing folder or annotation file, unreadable JSON, unknown excluded category, or no
            image left after the filters.
    """

    name = "coco"

    def __init__(
        self,
        root: str | Path,
        *,
        split: str = "train2017",
        rng_seed: int = 0,
        proxy_size: int | None = None,
        unit: str = "instance",
        min_instance_area: float = DEFAULT_MIN_INSTANCE_AREA,
        min_image_size: int = MIN_IMAGE_SIZE,
        exclude: Sequence[str] = EXCLUDED_CATEGORIES,
    ) -> None:
        if unit not in UNITS:
            raise OutlierError(f"unknown COCO sampling unit {unit!r}; valid: {', '.join(UNITS)}")
        self.root = Path(root).expanduser()
        self.split = split
        self.unit = unit
        annotation_file = self.root / "annotations" / f"instances_{split}.json"
        image_dir = self.root / split
        if not self.root.is_dir():
            raise OutlierError(f"COCO folder not found: {self.root}")
        if not annotation_file.is_file():
            raise OutlierError(f"COCO annotation file missing: {annotation_file}")
        if not image_dir.is_dir():
            raise OutlierError(f"COCO image folder missing: {image_dir}")
        try:
            with annotation_file.open("rb") as stream:
                data = json.load(stream)
            categories = {str(c["name"]): int(c["id"]) for c in data["categories"]}
            images = {int(i["id"]): i for i in data["images"]}
            annotations = data["annotations"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise OutlierError(f"cannot read COCO annotations {annotation_file}: {error}") from None
        unknown = [name for name in exclude if name not in categories]
        if unknown:
            raise OutlierError(f"{annotation_file} has no category {unknown[0]!r} to exclude")
        excluded_ids = {categories[name] for name in exclude}
        self.excluded_categories: tuple[str, ...] = tuple(exclude)

        per_image: dict[int, list[dict]] = {}
        dropped: set[int] = set()
        for annotation in annotations:
            image_id = int(annotation["image_id"])
            if int(annotation["category_id"]) in excluded_ids:
                dropped.add(image_id)
            per_image.setdefault(image_id, []).append(annotation)
        present = {path.name for path in image_dir.iterdir()}

        kept: list[CocoImage] = []
        for image_id in sorted(per_image):
            info = images.get(image_id)
            if image_id in dropped or info is None or str(info["file_name"]) not in present:
                continue
            height, width = int(info["height"]), int(info["width"])
            if height < min_image_size or width < min_image_size:
                continue
            anns = per_image[image_id]
            instances = tuple(i for i, a in enumerate(anns) if not a.get("iscrowd", 0)
                              and float(a.get("area", _box_area(a))) >= min_instance_area)
            kept.append(CocoImage(image_dir / str(info["file_name"]), height, width,
                                  tuple(a["segmentation"] for a in anns), instances))
        if proxy_size is not None and proxy_size < len(kept):
            order = np.random.default_rng(rng_seed).permutation(len(kept))[: int(proxy_size)]
            kept = [kept[i] for i in sorted(order)]
        self.images: list[CocoImage] = kept
        self._samplable = [image for image in kept if image.instances] if unit == "instance" else kept
        if not self._samplable:
            raise OutlierError(
                f"no COCO image left in {image_dir} after dropping images with {', '.join(exclude)}, "
                f"images under {min_image_size}px and (per instance) objects under {min_instance_area}px"
            )

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"CocoOutliers({self.root}, {self.split}, {len(self.images)} images, unit={self.unit})"

    def _read(self, image: CocoImage) -> np.ndarray:
        bgr = cv2.imread(str(image.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OutlierError(f"cannot read COCO image {image.path}")
        if bgr.shape[:2] != (image.height, image.width):
            raise OutlierError(f"COCO image {image.path} is {bgr.shape[1]}x{bgr.shape[0]}, its annotations "
                               f"say {image.width}x{image.height}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _mask(self, image: CocoImage, indices: Sequence[int]) -> np.ndarray:
        mask = np.zeros((image.height, image.width), bool)
        for index in indices:
            try:
                mask |= annotation_mask(image.segmentations[index], image.height, image.width)
            except ValueError as error:
                raise OutlierError(f"{image.path.name}: annotation {index}: {error}") from None
        return mask

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One object: an instance (or an image's union of objects) cut to its tight box, and its mask."""
        image = self._samplable[int(rng.integers(len(self._samplable)))]
        if self.unit == "instance":
            indices: Sequence[int] = (image.instances[int(rng.integers(len(image.instances)))],)
        else:
            indices = range(len(image.segmentations))
        mask = self._mask(image, indices)
        return crop_to_mask(self._read(image), mask, str(image.path))

    def context(self, rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """A whole kept image scaled to cover (height, width), centre-cropped; labels 1 on its objects, 0 else."""
        image = self.images[int(rng.integers(len(self.images)))]
        rgb = self._read(image)
        mask = self._mask(image, range(len(image.segmentations))).astype(np.uint8)
        scale = max(height / image.height, width / image.width)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        top, left = (size[1] - height) // 2, (size[0] - width) // 2
        window = (slice(top, top + height), slice(left, left + width))
        labels = (mask[window] > 0).astype(np.uint8) * OOD_ANOMALY
        return np.ascontiguousarray(rgb[window]), labels


def _box_area(annotation: dict) -> float:
    box = annotation.get("bbox") or (0, 0, 0, 0)
    return float(box[2]) * float(box[3])


__all__ = [
    "EXCLUDED_CATEGORIES", "CocoImage", "CocoOutliers", "annotation_mask", "polygons_to_mask",
    "rle_counts_to_string", "rle_decode", "rle_encode", "rle_string_to_counts",
]
