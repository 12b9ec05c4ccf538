# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Builders of tiny benchmark datasets in their exact published layouts, for tests (under tmp_path).

Each builder writes a handful of small frames and returns a :class:`Written` listing, in the order the
loader must yield them, the frame names and the expected converted ground truth (0 / 1 / 255, or None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

HEIGHT, WIDTH = 12, 20


@dataclass
class Written:
    """What a builder wrote: the root to open, and the expected frames in loader order."""

    root: Path
    names: list[str] = field(default_factory=list)
    ood_gt: list[np.ndarray | None] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    labels: list[Path | None] = field(default_factory=list)
    semantic: list[np.ndarray] = field(default_factory=list)


def _image(path: Path, seed: int) -> np.ndarray:
    """Write a random RGB picture (lossless formats) and return the RGB array."""
    rgb = np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if path.suffix == ".webp" else []  # >100 = lossless webp
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return rgb


def _label(path: Path, values: np.ndarray, *, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(values.astype(np.uint8), mode="L")
    if palette:
        # A palette PNG, as label tools write them: the stored index is the label.
        image = image.convert("P")
        image.putpalette([c for i in range(256) for c in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    image.save(path)


def _pattern(blocks: list[tuple[slice, slice, int]], fill: int) -> np.ndarray:
    """A label map of ``fill`` with rectangular blocks of other values, painted in order."""
    labels = np.full((HEIGHT, WIDTH), fill, dtype=np.uint8)
    for rows, cols, value in blocks:
        labels[rows, cols] = value
    return labels


def make_lostandfound(root: Path, *, split: str = "test") -> Written:
    """Two scenes, sequences out of creation order, one frame with a bicycle, one with a kid, one empty.

    Frames (loader order): 02_Hanns_Klemm_Str_44 seq 0 frames 10, 40 (bicycle id 23 present), seq 1
    frame 20 (all ids 0); 04_Maurener_Weg_8 seq 0 frame 30, seq 3 frames 50 (kid id 41), 60.
    A right stereo image and a labelTrainIds file exist too and must be ignored.
    """
    plan = [
        ("02_Hanns_Klemm_Str_44", 1, 20, "empty"),
        ("02_Hanns_Klemm_Str_44", 0, 40, 23),
        ("04_Maurener_Weg_8", 3, 60, 5),
        ("02_Hanns_Klemm_Str_44", 0, 10, 2),
        ("04_Maurener_Weg_8", 0, 30, 17),
        ("04_Maurener_Weg_8", 3, 50, 41),
    ]
    written = Written(root=root)
    expected = {}
    for seed, (scene, seq, frame, obstacle) in enumerate(plan):
        fid = f"{scene}_{seq:06d}_{frame:06d}"
        image = root / "leftImg8bit" / split / scene / f"{fid}_leftImg8bit.png"
        _image(image, seed)
        _image(root / "rightImg8bit" / split / scene / f"{fid}_rightImg8bit.png", seed + 100)
        label = root / "gtCoarse" / split / scene / f"{fid}_gtCoarse_labelIds.png"
        if obstacle == "empty":
            ids = np.zeros((HEIGHT, WIDTH), np.uint8)
        else:
            # top rows out of ROI (0), road below (1), an obstacle block on the road
            ids = _pattern([(slice(0, 4), slice(None), 0), (slice(6, 9), slice(5, 9), obstacle)], 1)
        _label(label, ids)
        _label(label.with_name(f"{fid}_gtCoarse_labelTrainIds.png"), np.minimum(ids, 2))
        gt = np.where(ids == 0, 255, np.where(ids == 1, 0, 1)).astype(np.uint8)
        expected[(scene, seq, frame)] = (f"{fid}_leftImg8bit", gt, image, label)
    for key in sorted(expected):
        name, gt, image, label = expected[key]
        written.names.append(name)
        written.ood_gt.append(gt)
        written.images.append(image)
        written.labels.append(label)
    return written


def make_fishyscapes(root: Path) -> dict[str, Written]:
    """``LostAndFound/`` (3 frames) and ``Static/`` (2 frames), labels 0/1/255 plus a stray value 7."""
    out = {}
    for folder, count in (("LostAndFound", 3), ("Static", 2)):
        written = Written(root=root)
        for i in range(count):
            name = f"{i}"
            image = root / folder / "original" / f"{name}.png"
            _image(image, 10 * i + count)
            void, ood, stray = slice(0, 3), (slice(5, 8), slice(2, 6)), (slice(10, 12), slice(0, 2))
            raw = _pattern([(void, slice(None), 255), (*ood, 1), (*stray, 7)], 0)
            label = root / folder / "labels" / f"{name}.png"
            _label(label, raw)
            written.names.append(name)
            written.ood_gt.append(np.where(raw == 7, 255, raw).astype(np.uint8))
            written.images.append(image)
            written.labels.append(label)
        out[folder] = written
    return out


def make_roadanomaly(root: Path, *, layout: str = "official") -> Written:
    """The official archive (frame_list.json, frames/<n>.jpg, palette labels 0/1/2) or the converted copy.

    The official frame list deliberately orders frames non-alphabetically. Images are PNG in the
    official layout too (the loader reads what ``frame_list.json`` names), so pixels compare exactly.
    """
    written = Written(root=root)
    names = ["zebra01_crossing", "animals02_cows", "cones03_road"]
    for seed, name in enumerate(names):
        if layout == "official":
            image = root / "frames" / f"{name}.png"
            label = root / "frames" / f"{name}.labels" / "labels_semantic.png"
            raw = _pattern([(slice(6, 12), slice(None), 1), (slice(7, 10), slice(3, 8), 2)], 0)
            _label(label, raw, palette=True)
            gt = (raw == 2).astype(np.uint8)
        else:
            image = root / "original" / f"{name}.png"
            label = root / "labels" / f"{name}.png"
            raw = _pattern([(slice(7, 10), slice(3, 8), 1), (slice(0, 1), slice(None), 255)], 0)
            _label(label, raw)
            gt = raw
        _image(image, seed)
        written.names.append(name)
        written.ood_gt.append(gt)
        written.images.append(image)
        written.labels.append(label)
    if layout == "official":
        (root / "frame_list.json").write_text(json.dumps([f"{n}.png" for n in names]))
    else:
        order = sorted(range(len(names)), key=lambda i: names[i])
        for attr in ("names", "ood_gt", "images", "labels"):
            setattr(written, attr, [getattr(written, attr)[i] for i in order])
    return written


def make_smiyc(root: Path, *, track: str = "anomaly", unlabeled: tuple[str, ...] = ()) -> Written:
    """``images/`` + ``labels_masks/<fid>_labels_semantic.png`` (0/1/255); ``unlabeled`` frames get no label.

    AnomalyTrack images are written as PNG named like the benchmark's (``validation0000``), ObstacleTrack
    as lossless WebP (``curvy-street_...``), matching the formats the archives ship.
    """
    written = Written(root=root)
    if track == "anomaly":
        names, suffix = ["validation0000", "validation0001", "validation0002"], ".png"
    else:
        names, suffix = ["curvy-street_000001", "curvy-street_000002", "gravel_000003"], ".webp"
    for seed, name in enumerate(names):
        image = root / "images" / f"{name}{suffix}"
        _image(image, seed + 20)
        label: Path | None = root / "labels_masks" / f"{name}_labels_semantic.png"
        if name in unlabeled:
            label, gt = None, None
        else:
            gt = _pattern([(slice(0, 5), slice(None), 255), (slice(6, 9), slice(8, 12), 1)], 0)
            _label(label, gt)
            _label(label.with_name(f"{name}_labels_semantic_color.png"), gt * 3)
        written.names.append(name)
        written.ood_gt.append(gt)
        written.images.append(image)
        written.labels.append(label)
    return written


def make_streethazards(root: Path, *, split: str = "test") -> Written:
    """``test/images/test/<town>/<n>.png`` + ``test/annotations/...`` (values 1-13, 14 = anomaly).

    Towns and frame numbers are written out of order (``t6`` before ``t5``, ``1000`` before ``300``): the
    loader orders by town, then numerically. Training frames go under ``train/images/training/``.
    """
    archive, folder = ("test", "test") if split == "test" else ("train", split)
    written = Written(root=root)
    for seed, (town, number) in enumerate([("t6", "7"), ("t5", "1000"), ("t5", "300")]):
        image = root / archive / "images" / folder / town / f"{number}.png"
        label = root / archive / "annotations" / folder / town / f"{number}.png"
        raw = _pattern([(slice(6, 12), slice(None), 8), (slice(7, 10), slice(3, 8), 14),
                        (slice(0, 2), slice(0, 4), 13)], 1 + seed)
        _image(image, seed + 40)
        _label(label, raw)
        written.names.append(f"{town}_{number}")
        written.ood_gt.append((raw == 14).astype(np.uint8))
        written.semantic.append(np.where(raw == 14, 255, raw - 1).astype(np.uint8))
        written.images.append(image)
        written.labels.append(label)
    order = [2, 1, 0]  # t5/300, t5/1000, t6/7
    for attr in ("names", "ood_gt", "semantic", "images", "labels"):
        setattr(written, attr, [getattr(written, attr)[i] for i in order])
    return written
