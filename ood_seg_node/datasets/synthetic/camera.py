# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The pinhole camera of the synthetic world and the rotation that orients it.

Why it exists: the camera model is public (nodes publish it as CameraInfo) and every projection in the
renderer and the obstacle patches goes through it and its world->camera rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera mounted on the car, looking forward and pitched down, no roll or yaw.

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels.
        height_m: camera height above the (flat) ground in metres.
        pitch_rad: downward pitch in radians (positive = looking down).
        width, height: image size in pixels.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    height_m: float
    pitch_rad: float
    width: int
    height: int

    @classmethod
    def for_size(cls, height: int, width: int) -> CameraModel:
        """The default camera for an image size; the focal length scales with width (Cityscapes-like)."""
        f = 1.104 * width
        return cls(
            fx=f,
            fy=f,
            cx=(width - 1) / 2.0,
            cy=(height - 1) / 2.0,
            height_m=1.25,
            pitch_rad=0.035,
            width=width,
            height=height,
        )

    @property
    def k(self) -> np.ndarray:
        """The 3x3 intrinsic matrix (row-major), e.g. for sensor_msgs/CameraInfo."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """World->camera rotation; rows are camera right, down, forward expressed in world coordinates."""
    sp, cp, sy, cy = math.sin(pitch), math.cos(pitch), math.sin(yaw), math.cos(yaw)
    return np.array([[cy, 0.0, -sy], [-sp * sy, -cp, -sp * cy], [sy * cp, -sp, cy * cp]])

