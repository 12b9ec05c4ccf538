# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Temporal fusion of anomaly scores: the previous fused map, warped into the current frame, blended in.

Per frame each head scores alone; a small far obstacle then flickers in and out of the mask and a single
noisy frame makes a false obstacle. Fusing the evidence of consecutive frames along the scene's motion keeps
what persists and damps what does not (a recursive exponential average along motion trajectories):

    fused_t(x) = alpha * score_t(x) + (1 - alpha) * fused_{t-1}(m_t(x))    where m_t(x) lies inside the frame
    fused_t(x) = score_t(x)                                                 elsewhere

``m_t`` maps a pixel of the current frame to where the same scene point was in the previous one:

- ``flow``: dense optical flow (OpenCV's DIS, from the current to the previous grey image at the score map's
  resolution: one flow for every head, about a millisecond at stride 4);
- ``ground``: the homography that flat ground induces between the two camera poses (:mod:`ood_seg_node.camera`),
  applied where rays meet the ground within 80 m; the rest of the frame is not fused. It needs each frame's
  :class:`~ood_seg_node.camera.CameraView` (CameraInfo and odometry in the node, the renderer's poses in the
  synthetic world).

A sequence restarts (the frame is scored alone, as with ``none``) on its first frame, on a time stamp gap
above ``max_gap_s`` or a stamp going backwards (a bag looping), on a change of the image size, and when the
motion cannot be had (a flow that is not finite or moves the image by more than a quarter of its width, a
frame without camera pose for ``ground``, or a camera that moved more than 20 m or turned more than 45 degrees
since the previous frame: another recording, or an odometry reset).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Mapping

import cv2
import numpy as np

from ood_seg_node.camera import CameraView, ground_homography, ground_region, intrinsic_matrix, pixel_grid

FUSION_MODES = ("none", "flow", "ground")
MAX_FLOW_FRACTION = 0.25  # a median motion above this share of the width is a cut or a failed flow
MAX_CAMERA_JUMP = (20.0, math.radians(45.0))  # metres, radians between frames: a new recording or a reset


@dataclass
class Correspondence:
    """Where each pixel of a (h, w) map was in the previous frame: ``cv2.remap`` maps plus validity."""

    map_x: np.ndarray  # (h, w) float32 previous column of each current pixel
    map_y: np.ndarray  # (h, w) float32 previous row
    valid: np.ndarray  # (h, w) bool: the previous position is inside the frame (and, for ground, on the ground)

    @classmethod
    def inside(cls, map_x: np.ndarray, map_y: np.ndarray, valid: np.ndarray | bool = True) -> Correspondence:
        """Previous positions (NaN where undefined) -> valid where ``valid`` and finite inside the frame."""
        height, width = map_x.shape
        valid = valid & np.isfinite(map_x) & np.isfinite(map_y) \
            & (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        return cls(np.nan_to_num(map_x).astype(np.float32), np.nan_to_num(map_y).astype(np.float32), valid)

    def warp(self, previous: np.ndarray) -> np.ndarray:
        """``previous`` (h, w) sampled at each current pixel's previous position (bilinear)."""
        return cv2.remap(previous, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def displacement(self, rows: slice, cols: slice) -> tuple[float, float]:
        """Median (dy, dx) from current to previous positions over a window (valid pixels; 0 if none)."""
        valid = self.valid[rows, cols]
        if not valid.any():
            return 0.0, 0.0
        v, u = np.mgrid[rows, cols]
        return (float(np.median(self.map_y[rows, cols][valid] - v[valid])),
                float(np.median(self.map_x[rows, cols][valid] - u[valid])))


@dataclass
class FusionStep:
    """What one frame's fusion did.

    Attributes:
        scores: head -> fused score at the same resolution as given.
        restart: why the sequence restarted at this frame (``first frame``, ``stamp gap 1.20 s``, ...), or
            empty when the previous frame was fused in.
        correspondence: current -> previous pixel map per map shape (empty on a restart or with ``none``).
        elapsed_ms: time spent on motion and blending.
        cut: the frame starts a new sequence (first frame, stamp gap, size change), so tracks end too; a
            motion failure restarts the fusion only.
    """

    scores: dict[str, np.ndarray]
    restart: str = ""
    correspondence: dict[tuple[int, int], Correspondence] = field(default_factory=dict)
    elapsed_ms: float = 0.0
    cut: bool = False


def grey(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """HxWx3 uint8 RGB -> (h, w) uint8 grey at ``shape`` (area interpolation)."""
    small = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) \
        if image.shape[:2] != tuple(shape) else image
    return cv2.cvtColor(np.ascontiguousarray(small), cv2.COLOR_RGB2GRAY)


def flow_correspondence(current: np.ndarray, previous: np.ndarray,
                        dis: cv2.DISOpticalFlow | None = None) -> Correspondence | None:
    """DIS optical flow from the current to the previous grey image; None when it fails or jumps."""
    height, width = current.shape
    if min(height, width) < 8:
        return None
    flow = (dis or new_flow_estimator()).calc(current, previous, None)
    if flow is None or not np.isfinite(flow).all():
        return None
    if float(np.median(np.hypot(flow[..., 0], flow[..., 1]))) > MAX_FLOW_FRACTION * width:
        return None
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return Correspondence.inside(u + flow[..., 0], v + flow[..., 1])


def ground_correspondence(previous: CameraView, current: CameraView, shape: tuple[int, int],
                          image_shape: tuple[int, int]) -> Correspondence | None:
    """The ground homography's correspondence at a map of ``shape`` for images of ``image_shape``."""
    scale = (shape[0] / image_shape[0], shape[1] / image_shape[1])
    homography = ground_homography(previous, current, scale)
    if not np.isfinite(homography).all():
        return None
    mapped = pixel_grid(shape) @ homography.T
    with np.errstate(divide="ignore", invalid="ignore"):
        map_x = (mapped[..., 0] / mapped[..., 2]).astype(np.float32)
        map_y = (mapped[..., 1] / mapped[..., 2]).astype(np.float32)
    # a ground point maps to the same ground point: on the ground in the current view is the condition
    return Correspondence.inside(map_x, map_y, ground_region(current, shape, scale) & (mapped[..., 2] > 0))


def depth_correspondence(previous: CameraView, current: CameraView, depth: np.ndarray,
                         previous_depth: np.ndarray | None = None, *, tolerance: float = 0.05) -> Correspondence:
    """The true correspondence of a static scene from the current frame's z-depth and both camera poses.

    For evaluation (ego-motion compensation of the synthetic world, whose renderer gives depth and poses):
    each pixel is back-projected at its depth and projected into the previous view. With ``previous_depth``
    a pixel whose point was hidden in the previous frame (its predicted depth more than ``tolerance``
    relatively behind what was seen there) is invalid.
    """
    height, width = depth.shape
    rays = pixel_grid(depth.shape) @ np.linalg.inv(intrinsic_matrix(current.intrinsics)).T
    relative = np.linalg.inv(previous.pose) @ current.pose
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # sky: infinite depth, invalid below
        moved = (rays * depth[..., None]) @ relative[:3, :3].T + relative[:3, 3]
        projected = moved @ intrinsic_matrix(previous.intrinsics).T
        found = Correspondence.inside((projected[..., 0] / projected[..., 2]).astype(np.float32),
                                      (projected[..., 1] / projected[..., 2]).astype(np.float32),
                                      np.isfinite(depth) & (depth > 0) & (moved[..., 2] > 0))
    if previous_depth is not None:
        seen = previous_depth[np.clip(np.rint(found.map_y).astype(int), 0, height - 1),
                              np.clip(np.rint(found.map_x).astype(int), 0, width - 1)]
        found.valid &= moved[..., 2] <= seen * (1.0 + tolerance) + 0.1
    return found


def _jump(previous: CameraView, current: CameraView) -> str:
    """``camera pose jumped`` when the camera moved implausibly far between two frames, else ``""``."""
    relative = np.linalg.inv(previous.pose) @ current.pose
    angle = math.acos(float(np.clip((np.trace(relative[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)))
    distance = float(np.linalg.norm(relative[:3, 3]))
    return "camera pose jumped" if not distance <= MAX_CAMERA_JUMP[0] or angle > MAX_CAMERA_JUMP[1] else ""


def new_flow_estimator() -> cv2.DISOpticalFlow:
    """OpenCV's DIS flow, medium preset (one per user: it keeps internal buffers)."""
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


class TemporalFusion:
    """Recursive fusion of each head's score map along the scene's motion (see the module docstring).

    Args:
        mode: ``none`` (scores pass through), ``flow`` or ``ground``.
        alpha: weight of the current frame, in (0, 1]; 1 = no memory.
        max_gap_s: a larger stamp gap between frames restarts the sequence (> 0).
    """

    def __init__(self, mode: str = "flow", *, alpha: float = 0.7, max_gap_s: float = 0.5) -> None:
        if mode not in FUSION_MODES:
            raise ValueError(f"invalid temporal_fusion {mode!r}; valid: {', '.join(FUSION_MODES)}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"invalid temporal_alpha {alpha!r}; valid: a number in (0, 1]")
        if not (max_gap_s > 0.0 and math.isfinite(max_gap_s)):
            raise ValueError(f"invalid temporal_max_gap {max_gap_s!r}; valid: a number of seconds > 0")
        self.mode, self.alpha, self.max_gap_s = mode, float(alpha), float(max_gap_s)
        self._flow = new_flow_estimator() if mode == "flow" else None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next one starts a sequence."""
        self._fused: dict[str, np.ndarray] = {}
        self._stamp: float | None = None
        self._image_shape: tuple[int, ...] | None = None
        self._greys: dict[tuple[int, int], np.ndarray] = {}
        self._view: CameraView | None = None

    def step(self, scores: Mapping[str, np.ndarray], image: np.ndarray, *, stamp: float | None = None,
             view: CameraView | None = None) -> FusionStep:
        """Fuse one frame's scores ((h, w) float32 per head) of the HxWx3 uint8 ``image``.

        Args:
            scores: head -> score map (any resolution; maps of one shape share one motion estimate).
            image: the frame the scores were computed on.
            stamp: the frame's time in seconds (None: consecutive calls are consecutive frames).
            view: the frame's camera (``ground`` needs it).
        """
        started = time.perf_counter()
        restart = self._cut_reason(scores, image, stamp)
        cut = bool(restart)
        if self.mode == "none":
            self._fused, self._stamp, self._image_shape = dict(scores), stamp, image.shape
            return FusionStep(dict(scores), restart, cut=cut)
        if not restart and self.mode == "ground":
            restart = "no camera pose" if view is None or self._view is None else _jump(self._view, view)
        shapes = {tuple(np.shape(score)) for score in scores.values()}
        greys = {shape: grey(image, shape) for shape in shapes} if self.mode == "flow" else {}
        correspondence: dict[tuple[int, int], Correspondence] = {}
        if not restart:
            for shape in shapes:
                found = flow_correspondence(greys[shape], self._greys[shape], self._flow) if self.mode == "flow" \
                    else ground_correspondence(self._view, view, shape, image.shape[:2])
                if found is None:
                    restart = "optical flow failed" if self.mode == "flow" else "ground homography failed"
                    correspondence = {}
                    break
                correspondence[shape] = found
        fused = {}
        for name, score in scores.items():
            score = np.asarray(score, dtype=np.float32)
            match = correspondence.get(tuple(score.shape))
            if match is None:
                fused[name] = score
                continue
            blended = self.alpha * score + (1.0 - self.alpha) * match.warp(self._fused[name])
            fused[name] = np.where(match.valid, blended, score).astype(np.float32)
        self._fused, self._stamp, self._image_shape = fused, stamp, image.shape
        self._greys, self._view = greys, view
        return FusionStep(fused, restart, correspondence, (time.perf_counter() - started) * 1e3, cut=cut)

    def _cut_reason(self, scores: Mapping[str, np.ndarray], image: np.ndarray, stamp: float | None) -> str:
        """Why this frame starts a new sequence (empty when it continues the previous one)."""
        if not self._fused:
            return "first frame"
        if image.shape != self._image_shape or any(
                np.shape(score) != np.shape(self._fused.get(name)) for name, score in scores.items()):
            return "image size changed"
        if stamp is not None and self._stamp is not None:
            gap = stamp - self._stamp
            if not 0.0 < gap <= self.max_gap_s:
                return f"stamp gap {gap:.3f} s"
        return ""
