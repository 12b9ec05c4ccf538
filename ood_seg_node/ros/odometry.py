# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The vehicle's pose at an image's stamp, from a short buffer of odometry poses.

Why it exists: ground-plane temporal fusion (``temporal_fusion: ground``) needs each frame's camera pose in
a fixed frame. Odometry (nav_msgs/Odometry of the vehicle base in ``odom``) arrives at its own rate and
stamps, so the node keeps the recent poses here and asks for the pose at each image's stamp:

- between two buffered poses (at most ``max_interval_s`` apart): the position interpolated linearly and the
  rotation by spherical linear interpolation (slerp), so the pose is exact at both ends;
- before the first or after the last buffered pose by at most ``tolerance_s`` (50 ms): that nearest pose
  (odometry usually lags the camera by a few milliseconds; no extrapolation);
- otherwise (further outside the buffer, or inside a gap of the odometry): None, and the fusion restarts.

The buffer keeps the newest ``max_messages`` poses within ``span_s`` seconds of the newest one; a stamp more
than ``span_s`` older than the newest (a bag replayed from its start) empties it first.

No rclpy and no message imports: :func:`odometry_pose` reads a nav_msgs/Odometry by its fields, so all of
this is unit-testable with plain numpy poses.
"""

from __future__ import annotations

import bisect
import math
import threading
from typing import Any

import numpy as np

from ood_seg_node.camera import pose_matrix, rotation_quaternion


def stamp_seconds(stamp: Any) -> float:
    """builtin_interfaces/Time -> float seconds."""
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def odometry_pose(msg: Any) -> tuple[float, np.ndarray]:
    """(stamp in seconds, 4x4 base -> fixed-frame pose) of a nav_msgs/Odometry.

    Raises:
        ValueError: a non-finite position or orientation, or a zero quaternion (one line naming the values).
    """
    pose = msg.pose.pose
    position = (pose.position.x, pose.position.y, pose.position.z)
    orientation = (pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w)
    return stamp_seconds(msg.header.stamp), pose_matrix(position, orientation)


def slerp(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w) along the shorter arc."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    dot = float(a @ b)
    if dot < 0.0:
        b, dot = -b, -dot
    if dot > 0.9995:  # nearly equal: the linear blend is exact to ~1e-7 and avoids dividing by sin(~0)
        q = a + fraction * (b - a)
        return q / np.linalg.norm(q)
    angle = math.acos(min(dot, 1.0))
    return (math.sin((1.0 - fraction) * angle) * a + math.sin(fraction * angle) * b) / math.sin(angle)


def interpolate_pose(a: np.ndarray, b: np.ndarray, fraction: float) -> np.ndarray:
    """4x4 pose a fraction of the way from ``a`` (0) to ``b`` (1): linear position, slerped rotation."""
    if fraction <= 0.0:
        return np.array(a, dtype=np.float64)
    if fraction >= 1.0:
        return np.array(b, dtype=np.float64)
    quaternion = slerp(rotation_quaternion(a[:3, :3]), rotation_quaternion(b[:3, :3]), fraction)
    position = (1.0 - fraction) * a[:3, 3] + fraction * b[:3, 3]
    return pose_matrix(tuple(position), tuple(quaternion))


class PoseBuffer:
    """Recent (stamp, 4x4 pose) pairs and the pose at any stamp among them (see the module docstring).

    Thread-safe: the odometry callback adds while the node's worker looks up.

    Args:
        max_messages: poses kept at most (>= 2).
        span_s: poses older than the newest by more than this are dropped (> 0).
        tolerance_s: how far outside the buffered stamps the nearest pose still answers (>= 0).
        max_interval_s: two neighbouring poses further apart than this are not interpolated between (> 0).
    """

    def __init__(self, *, max_messages: int = 200, span_s: float = 2.0, tolerance_s: float = 0.05,
                 max_interval_s: float = 0.5) -> None:
        if max_messages < 2 or not span_s > 0.0 or not tolerance_s >= 0.0 or not max_interval_s > 0.0:
            raise ValueError(f"invalid pose buffer: max_messages {max_messages}, span_s {span_s}, "
                             f"tolerance_s {tolerance_s}, max_interval_s {max_interval_s}")
        self.max_messages, self.span_s = int(max_messages), float(span_s)
        self.tolerance_s, self.max_interval_s = float(tolerance_s), float(max_interval_s)
        self._lock = threading.Lock()
        self._stamps: list[float] = []
        self._poses: list[np.ndarray] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps, self._poses = [], []

    def span(self) -> tuple[float, float] | None:
        """(oldest, newest) buffered stamp, or None when empty."""
        with self._lock:
            return (self._stamps[0], self._stamps[-1]) if self._stamps else None

    def add(self, stamp: float, pose: np.ndarray) -> None:
        """Buffer a pose (stamps may arrive out of order; an equal stamp replaces the pose).

        Raises:
            ValueError: a non-finite stamp or pose, or not a 4x4 matrix.
        """
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all() or not math.isfinite(stamp):
            raise ValueError(f"invalid odometry pose at stamp {stamp!r}: need a finite stamp and a finite 4x4 pose")
        with self._lock:
            if self._stamps and stamp < self._stamps[-1] - self.span_s:
                self._stamps, self._poses = [], []  # time went back (a bag restarted): a new history
            index = bisect.bisect_left(self._stamps, stamp)
            if index < len(self._stamps) and self._stamps[index] == stamp:
                self._poses[index] = pose
            else:
                self._stamps.insert(index, stamp)
                self._poses.insert(index, pose)
            newest = self._stamps[-1]
            keep = max(bisect.bisect_left(self._stamps, newest - self.span_s), len(self._stamps) - self.max_messages)
            if keep > 0:
                del self._stamps[:keep], self._poses[:keep]

    def lookup(self, stamp: float) -> np.ndarray | None:
        """The 4x4 pose at ``stamp`` (interpolated, or the nearest within ``tolerance_s``), or None."""
        if not math.isfinite(stamp):
            return None
        with self._lock:
            stamps, poses = self._stamps, self._poses
            if not stamps:
                return None
            if stamp <= stamps[0]:
                return poses[0].copy() if stamps[0] - stamp <= self.tolerance_s else None
            if stamp >= stamps[-1]:
                return poses[-1].copy() if stamp - stamps[-1] <= self.tolerance_s else None
            after = bisect.bisect_right(stamps, stamp)
            t0, t1, p0, p1 = stamps[after - 1], stamps[after], poses[after - 1], poses[after]
        if t1 - t0 > self.max_interval_s:
            return None
        return interpolate_pose(p0, p1, (stamp - t0) / (t1 - t0))
