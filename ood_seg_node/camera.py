# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Where the camera is: intrinsics, its mount above flat ground and its pose, for ground-plane warping.

Why it exists: ground-plane temporal fusion needs, for two consecutive frames, the camera's pose in a fixed
frame (``odom``, or the synthetic world's) and the ground plane in the camera's optical frame (x right,
y down, z forward). Frames from the synthetic world carry a :class:`CameraView`, the node builds one from
CameraInfo and odometry; the homography between the two frames' views of the ground follows from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Intrinsics = tuple[float, float, float, float]  # (fx, fy, cx, cy) in pixels


@dataclass(frozen=True)
class CameraView:
    """One frame's camera: intrinsics at the image's size, mount above flat ground, pose.

    Attributes:
        intrinsics: (fx, fy, cx, cy) in pixels of the frame's image.
        height: camera height above the flat ground, metres (> 0).
        pitch: downward pitch of the optical axis, radians (no roll).
        pose: 4x4 transform from the optical frame to a fixed frame (``odom``): ``X_fixed = pose @ X_cam``.
    """

    intrinsics: Intrinsics
    height: float
    pitch: float
    pose: np.ndarray

    @property
    def base_pose(self) -> np.ndarray:
        """4x4 pose of the vehicle base under the camera (what odometry reports): ``pose @ inv(mount)``."""
        return self.pose @ np.linalg.inv(mount_pose(self.height, self.pitch))

    @property
    def ground_normal(self) -> np.ndarray:
        """World "down" in the optical frame: ground points X satisfy ``ground_normal @ X == height``."""
        return np.array([0.0, math.cos(self.pitch), math.sin(self.pitch)])


def intrinsic_matrix(intrinsics: Intrinsics, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """3x3 K, optionally for an image resized by ``scale`` = (sy, sx) (pixel centres kept aligned)."""
    fx, fy, cx, cy = intrinsics
    sy, sx = scale
    return np.array([[fx * sx, 0.0, (cx + 0.5) * sx - 0.5], [0.0, fy * sy, (cy + 0.5) * sy - 0.5], [0.0, 0.0, 1.0]])


def ground_homography(previous: CameraView, current: CameraView, scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """3x3 H mapping a pixel of the current image to where the same ground point was in the previous one.

    For ground points X (``n @ X = h`` in the current optical frame) and the relative motion
    ``X_prev = R X + t``: ``X_prev = (R + t n^T / h) X``, so ``H = K (R + t n^T / h) K^-1``. ``scale`` gives H
    for both images resized by (sy, sx), e.g. at the score map's resolution.
    """
    relative = np.linalg.inv(previous.pose) @ current.pose
    rotation, translation = relative[:3, :3], relative[:3, 3]
    k_current = intrinsic_matrix(current.intrinsics, scale)
    k_previous = intrinsic_matrix(previous.intrinsics, scale)
    plane = rotation + np.outer(translation, current.ground_normal) / current.height
    return k_previous @ plane @ np.linalg.inv(k_current)


def pixel_grid(shape: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) float64 homogeneous coordinates (u, v, 1) of every pixel of an (h, w) image."""
    v, u = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    return np.stack([u, v, np.ones_like(u)], axis=-1)


def ground_region(view: CameraView, shape: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0), *,
                  max_range: float = 80.0) -> np.ndarray:
    """HxW bool: pixels whose ray meets the ground within ``max_range`` metres (the road area's hull).

    Far from the camera a pixel spans metres of road, so warping it by a ground homography would smear it.
    """
    rays = pixel_grid(shape) @ np.linalg.inv(intrinsic_matrix(view.intrinsics, scale)).T
    along = rays @ view.ground_normal
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(along > 1e-6, view.height / along * np.linalg.norm(rays, axis=-1), np.inf)
    return distance <= max_range


def mount_pose(height: float, pitch: float) -> np.ndarray:
    """4x4 optical frame -> vehicle base frame (x forward, y left, z up; base on the ground below the camera)."""
    # optical axes (x right, y down, z forward) in the base frame, pitched down about the base's y axis
    sp, cp = math.sin(pitch), math.cos(pitch)
    rotation = np.array([[0.0, -sp, cp], [-1.0, 0.0, 0.0], [0.0, -cp, -sp]])
    pose = np.eye(4)
    pose[:3, :3] = rotation
    pose[2, 3] = height
    return pose


def pose_matrix(position: tuple[float, float, float], quaternion: tuple[float, float, float, float]) -> np.ndarray:
    """4x4 from a position and a unit quaternion (x, y, z, w), as geometry_msgs/Pose holds them.

    Raises:
        ValueError: a non-finite value or a zero quaternion.
    """
    x, y, z, w = quaternion
    norm = math.sqrt(x * x + y * y + z * z + w * w)
    if not (math.isfinite(norm) and norm > 1e-9 and all(math.isfinite(p) for p in position)):
        raise ValueError(f"invalid pose: position {position}, quaternion {quaternion}")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    pose = np.eye(4)
    pose[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    pose[:3, 3] = position
    return pose


def rotation_quaternion(rotation: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix -> unit quaternion (x, y, z, w), w >= 0."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0.0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s])
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = np.array([0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s])
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = np.array([(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s])
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = np.array([(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0.0 else q
