# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Flat-ground camera geometry for images that come without depth: the prior the generators share.

Why it exists: fog needs a distance per pixel and an inserted object needs its size in pixels at the row it
stands on. A forward-looking vehicle camera over flat ground gives both from three numbers (focal length,
horizon row, camera height): a ground pixel at row ``v`` below the horizon lies at distance
``f * h / (v - v_horizon)`` (small pitch; rows above the horizon mirror it, see ``row_depth``), and an object
of height ``H`` metres standing there spans ``f * H / distance`` pixels. Defaults follow Cityscapes-like
cameras (focal 1.1 x width, horizon near the middle row, 1.3 m mount); a source with a camera model (the
synthetic world) gives its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GroundCamera"]


@dataclass(frozen=True)
class GroundCamera:
    """A pinhole camera over flat ground, enough for distances and object sizes per image row.

    Attributes:
        height: image height in pixels.
        width: image width in pixels.
        focal: focal length in pixels.
        horizon: image row of the horizon (may be fractional, may lie outside the image).
        mount_height: camera height above the ground in metres.
        max_depth: distance given to pixels at or above the horizon (sky, far scene), metres.
    """

    height: int
    width: int
    focal: float
    horizon: float
    mount_height: float = 1.3
    max_depth: float = 300.0

    @classmethod
    def default(cls, height: int, width: int, *, horizon_fraction: float = 0.47,
                mount_height: float = 1.3) -> GroundCamera:
        """The prior for an uncalibrated forward-looking camera of this image size."""
        if height < 2 or width < 2:
            raise ValueError(f"image size must be at least 2x2, got {height}x{width}")
        return cls(height, width, 1.1 * width, horizon_fraction * (height - 1), mount_height)

    @classmethod
    def from_camera_model(cls, camera) -> GroundCamera:
        """From the synthetic world's :class:`~ood_seg_node.datasets.synthetic.camera.CameraModel` (pitch kept)."""
        horizon = camera.cy - camera.fy * math.tan(camera.pitch_rad)
        return cls(camera.height, camera.width, float(camera.fy), float(horizon), float(camera.height_m))

    def row_depth(self) -> np.ndarray:
        """(height,) float32 distance in metres per image row, at most ``max_depth``.

        Below the horizon: the ground's distance. Above it the scene is taken as a corridor mirrored about the
        horizon (buildings and trees beside the road rise as far above it as the ground falls below), so a row
        ``k`` pixels above the horizon is as far as the ground ``k`` pixels below: far near the horizon, near
        at the top of the image, instead of the whole upper half at infinity.
        """
        offset = np.abs(np.arange(self.height, dtype=np.float64) - self.horizon)
        depth = self.focal * self.mount_height / np.maximum(offset, 1e-9)
        return np.minimum(depth, self.max_depth).astype(np.float32)

    def depth_map(self) -> np.ndarray:
        """(height, width) float32 ground-plane distance per pixel (rows only: the flat-ground prior)."""
        return np.broadcast_to(self.row_depth()[:, None], (self.height, self.width)).copy()

    def pixels_for(self, size_m: float, row: float) -> float:
        """Pixels spanned by ``size_m`` metres (upright, facing the camera) standing on the ground at ``row``."""
        below = row - self.horizon
        if below <= 0:
            return 0.0
        return float(size_m * below / self.mount_height)
