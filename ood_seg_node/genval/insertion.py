# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""OOD object insertion: cut-outs pasted into the user's own road frames, with exact ground truth.

Why it exists: a deployment's frames carry no anomaly labels, so the anomaly head cannot be measured on
them directly. Pasting objects at plausible positions (standing on the drivable area, sized by the
flat-ground prior, with a contact shadow and the scene's lighting) gives frames from the user's own
domain where the anomalies are known pixel for pixel (GenVal, Loiseau et al., ECCV 2024). Labels follow
the SMIYC obstacle track: 1 on objects, 0 on the rest of the drivable area, 255 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ood_seg_node.cityscapes import OOD_ANOMALY, OOD_IGNORE, OOD_INLIER
from ood_seg_node.genval.geometry import GroundCamera

__all__ = ["InsertionError", "Inserted", "ObjectBank", "insert_objects"]

_MIN_PX = 6  # smaller objects are not meaningful anomalies (and their ground truth is mostly edge)
_TRIES = 40  # placement attempts per object before giving up on it
_SHADOW_DARKEN = 0.4  # contact shadow: 40 % darker at its core
_MATCH = 0.5  # how far the object's luminance moves toward the local road's
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


class InsertionError(ValueError):
    """Invalid input to the insertion (bad arrays, unusable cut-out folder)."""


@dataclass
class Inserted:
    """A frame with pasted objects and its OOD ground truth (1 object, 0 drivable, 255 elsewhere)."""

    image: np.ndarray
    ood_gt: np.ndarray
    boxes: list[tuple[int, int, int, int]]


class ObjectBank:
    """Cut-outs to paste: RGBA uint8 arrays (alpha = coverage), each with a physical height in metres."""

    def __init__(self, cutouts: Sequence[np.ndarray], heights_m: Sequence[float]) -> None:
        if len(cutouts) != len(heights_m):
            raise InsertionError(f"ObjectBank: {len(cutouts)} cut-outs but {len(heights_m)} heights")
        for i, c in enumerate(cutouts):
            if c.dtype != np.uint8 or c.ndim != 3 or c.shape[2] != 4 or not (c[..., 3] > 0).any():
                raise InsertionError(f"ObjectBank: cut-out {i} is not a non-empty HxWx4 uint8 RGBA array")
        if any(not h > 0 for h in heights_m):
            raise InsertionError("ObjectBank: object heights must be positive metres")
        self.cutouts = [_crop(np.ascontiguousarray(c)) for c in cutouts]
        self.heights_m = [float(h) for h in heights_m]

    @classmethod
    def procedural(cls, count: int = 24, *, seed: int = 0) -> ObjectBank:
        """The package's own procedural obstacles: varied shapes, surfaces and 0.2-1.0 m heights."""
        from ood_seg_node.datasets.synthetic.obstacles import make_obstacle_patch

        if count < 1:
            raise InsertionError(f"ObjectBank.procedural: count must be >= 1, got {count}")
        rng = np.random.default_rng(seed)
        cutouts, heights = [], []
        for _ in range(count):
            rgb, mask = make_obstacle_patch(rng, 96, int(96 * rng.uniform(0.6, 1.8)))
            rgba = _crop(np.dstack([rgb, mask.astype(np.uint8) * 255]))
            height_m = float(rng.uniform(0.2, 1.0))
            width_m = height_m * rgba.shape[1] / rgba.shape[0]
            if width_m > 1.8:  # long pipes and plates: keep the footprint road-object sized
                height_m *= 1.8 / width_m
            cutouts.append(rgba)
            heights.append(height_m)
        return cls(cutouts, heights)

    @classmethod
    def from_folder(cls, folder: str | Path, *, seed: int = 0) -> ObjectBank:
        """Every RGBA ``*.png`` in ``folder`` (RGB-only ones are skipped), heights drawn in 0.3-1.0 m."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InsertionError(f"ObjectBank.from_folder: {folder} is not a directory")
        rng = np.random.default_rng(seed)
        cutouts, heights = [], []
        for path in sorted(folder.glob("*.png")):
            raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise InsertionError(f"ObjectBank.from_folder: cannot read {path}")
            if raw.ndim != 3 or raw.shape[2] != 4:
                continue
            if raw.dtype == np.uint16:
                raw = (raw >> 8).astype(np.uint8)
            if raw.dtype != np.uint8 or not (raw[..., 3] > 0).any():
                continue
            cutouts.append(cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA))
            heights.append(float(rng.uniform(0.3, 1.0)))
        if not cutouts:
            raise InsertionError(f"ObjectBank.from_folder: no usable RGBA *.png cut-outs in {folder}")
        return cls(cutouts, heights)

    def __len__(self) -> int:
        return len(self.cutouts)

    def combined(self, other: ObjectBank) -> ObjectBank:
        """Both banks' objects, this one's first."""
        return ObjectBank(self.cutouts + other.cutouts, self.heights_m + other.heights_m)


def _crop(rgba: np.ndarray) -> np.ndarray:
    """Crop to the alpha's bounding box, so the cut-out's bottom row is where the object touches the ground."""
    rows, cols = np.nonzero(rgba[..., 3])
    return rgba[rows.min():rows.max() + 1, cols.min():cols.max() + 1].copy()


def _render_cutout(rgba: np.ndarray, h_px: int, w_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale a cut-out to ``h_px`` x ``w_px`` and feather its edge: (float32 RGB 0-255, float32 alpha 0-1).

    Colour is resized premultiplied so transparent (often black) surroundings do not bleed into the edge;
    the feather blur grows with the object so large pastes do not show a cut-out's hard outline.
    """
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    premult = rgba[..., :3].astype(np.float32) * alpha[..., None]
    interp = cv2.INTER_AREA if h_px < rgba.shape[0] else cv2.INTER_LINEAR
    premult = cv2.resize(premult, (w_px, h_px), interpolation=interp)
    alpha = cv2.resize(alpha, (w_px, h_px), interpolation=interp)
    rgb = premult / np.maximum(alpha, 1e-4)[..., None]
    sigma = float(np.clip(0.3 + 0.012 * max(h_px, w_px), 0.3, 2.5))
    alpha = cv2.GaussianBlur(alpha, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
    return np.clip(rgb, 0, 255), np.clip(alpha, 0.0, 1.0)


def _shadow_geometry(camera: GroundCamera, cx: float, foot: int, w_px: int) -> tuple[float, float, float]:
    """Semi-axes and blur of the contact shadow: wider than the base, flattened by the ground's foreshortening."""
    a = 0.6 * w_px + 1.0
    b = max(1.5, a * float(np.clip((foot - camera.horizon) / camera.focal, 0.1, 0.5)))
    return a, b, 0.4 * b + 0.5


def _match_colour(rgb: np.ndarray, alpha: np.ndarray, road_rgb: np.ndarray) -> np.ndarray:
    """Move the object's luminance part-way to the road's and take on some of its tint: lit like the scene."""
    lum_obj = float((rgb @ _LUMA * alpha).sum() / max(alpha.sum(), 1e-6))
    lum_road = float(road_rgb @ _LUMA)
    gain = float(np.clip((lum_obj + _MATCH * (lum_road - lum_obj)) / max(lum_obj, 1.0), 0.5, 2.0))
    tint = np.clip((road_rgb / max(lum_road, 1.0)) ** 0.5, 0.8, 1.25).astype(np.float32)
    return np.clip(rgb * gain * tint, 0, 255)


def _validate(image: np.ndarray, drivable: np.ndarray, count: int, ood_gt: np.ndarray | None,
              camera: GroundCamera | None) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InsertionError(f"insert_objects: image must be HxWx3 uint8, got {getattr(image, 'shape', None)}")
    if not isinstance(drivable, np.ndarray) or drivable.shape != image.shape[:2]:
        raise InsertionError(f"insert_objects: drivable must be HxW {image.shape[:2]}, got "
                             f"{getattr(drivable, 'shape', None)}")
    if ood_gt is not None and (not isinstance(ood_gt, np.ndarray) or ood_gt.shape != image.shape[:2]):
        raise InsertionError(f"insert_objects: ood_gt must be HxW {image.shape[:2]}, got "
                             f"{getattr(ood_gt, 'shape', None)}")
    if count < 0:
        raise InsertionError(f"insert_objects: count must be >= 0, got {count}")
    if camera is not None and (camera.height, camera.width) != image.shape[:2]:
        raise InsertionError(f"insert_objects: camera is {camera.height}x{camera.width}, image "
                             f"{image.shape[0]}x{image.shape[1]}")


def insert_objects(image: np.ndarray, drivable: np.ndarray, *, bank: ObjectBank, count: int, seed: int,
                   camera: GroundCamera | None = None, ood_gt: np.ndarray | None = None) -> Inserted:
    """Paste up to ``count`` bank objects standing on ``drivable``, and return the frame and its ground truth.

    Objects that find no valid position within a bounded number of tries are left out (fewer boxes), so a
    frame with no drivable area comes back unchanged rather than raising.
    """
    _validate(image, drivable, count, ood_gt, camera)
    if count > 0 and len(bank) == 0:
        raise InsertionError("insert_objects: the object bank is empty")
    H, W = image.shape[:2]
    drivable = drivable.astype(bool)
    camera = camera or GroundCamera.default(H, W)
    gt = np.where(drivable, OOD_INLIER, OOD_IGNORE).astype(np.uint8)
    occupied = np.zeros((H, W), bool)
    if ood_gt is not None:
        gt[ood_gt == OOD_INLIER] = OOD_INLIER
        gt[ood_gt == OOD_ANOMALY] = OOD_ANOMALY
        occupied |= ood_gt == OOD_ANOMALY  # existing anomalies: neither stand on nor cover them
    standable = drivable & ~occupied
    standable[: max(0, min(H, int(np.floor(camera.horizon)) + 1))] = False
    feet = np.flatnonzero(standable)
    if count == 0 or feet.size == 0:
        return Inserted(image.copy(), gt, [])

    rng = np.random.default_rng(seed)
    source = image.astype(np.float32)
    out = source.copy()
    road_mean = source[drivable].mean(0)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(count):
        for _ in range(_TRIES):
            k = int(rng.integers(len(bank)))
            foot, cx = divmod(int(feet[rng.integers(feet.size)]), W)
            cut = bank.cutouts[k]
            h_px = int(round(camera.pixels_for(bank.heights_m[k], foot)))
            w_px = max(1, int(round(h_px * cut.shape[1] / cut.shape[0])))
            if h_px < _MIN_PX or h_px > H / 2 or w_px > W / 2:
                continue
            x0, y0 = cx - w_px // 2, foot - h_px + 1
            x1, y1 = x0 + w_px, foot + 1
            if x0 < 0 or x1 > W or y0 < 0 or not standable[foot, x0:x1].all():
                continue
            a, b, blur = _shadow_geometry(camera, cx, foot, w_px)
            ex0, ex1 = max(0, int(cx - a - 3 * blur)), min(W, int(np.ceil(cx + a + 3 * blur)) + 1)
            ey0, ey1 = min(y0, max(0, int(foot - b - 3 * blur))), min(H, int(np.ceil(foot + b + 3 * blur)) + 1)
            if occupied[ey0:ey1, min(x0, ex0):max(x1, ex1)].any():
                continue
            break
        else:
            continue  # no room for this object: leave it out
        # road colour around the foot, from the untouched frame, for the lighting match
        r = max(2, h_px // 4)
        win = np.s_[max(0, foot - r):foot + r + 1, max(0, x0 - w_px // 2):min(W, x1 + w_px // 2)]
        road = source[win][drivable[win]]
        road_rgb = road.mean(0) if len(road) >= 4 else road_mean
        # contact shadow first, so the object covers its upper half
        shade = np.zeros((ey1 - ey0, ex1 - ex0), np.float32)
        cv2.ellipse(shade, (int(round((cx - ex0) * 16)), int(round((foot - ey0) * 16))),
                    (int(round(a * 16)), int(round(b * 16))), 0, 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        shade = cv2.GaussianBlur(shade, (0, 0), blur)
        out[ey0:ey1, ex0:ex1] *= (1.0 - _SHADOW_DARKEN * shade)[..., None]
        rgb, alpha = _render_cutout(cut, h_px, w_px)
        rgb = _match_colour(rgb, alpha, road_rgb)
        patch = out[y0:y1, x0:x1]
        out[y0:y1, x0:x1] = alpha[..., None] * rgb + (1.0 - alpha[..., None]) * patch
        gt[y0:y1, x0:x1][alpha >= 0.5] = OOD_ANOMALY
        occupied[ey0:ey1, min(x0, ex0):max(x1, ex1)] = True
        standable[ey0:ey1, min(x0, ex0):max(x1, ex1)] = False
        boxes.append((x0, y0, x1, y1))
    return Inserted(np.clip(out + 0.5, 0, 255).astype(np.uint8), gt, boxes)
