# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Obstacles: connected components of the anomaly mask, and their place on the ground plane.

The vehicle stack wants objects, not pixels: each component of at least ``min_area`` pixels
(8-connectivity, as the SMIYC component metrics) becomes an :class:`Obstacle` with its box, area and
score statistics. With a pinhole camera of known height and pitch, the component's lowest-centre pixel
(where it touches the road) is intersected with the ground plane to give a 3D position in the camera's
optical frame (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Obstacle:
    """One connected anomaly component, in the coordinates of the published images."""

    x0: int
    y0: int
    x1: int  # exclusive
    y1: int  # exclusive
    area: int
    mean_score: float
    max_score: float
    centroid: tuple[float, float]  # (u, v)

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom-centre pixel (u, v): where an object lying on the road touches it."""
        return ((self.x0 + self.x1 - 1) / 2.0, float(self.y1 - 1))


def find_obstacles(mask: np.ndarray, score: np.ndarray, min_area: float,
                   scale: tuple[float, float] = (1.0, 1.0)) -> list[Obstacle]:
    """Components of ``mask`` (HxW bool/uint8) of at least ``min_area`` output pixels, largest first.

    ``scale`` = (sy, sx) maps ``mask`` pixels to output pixels: the pipeline finds components at the score's
    native resolution (the resolution of its information; 16x fewer pixels at stride 4) and reports boxes,
    areas and centroids in the published image's pixels.
    """
    mask = np.ascontiguousarray(mask)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    if count <= 1:
        return []
    # statistics over the masked pixels only: an anomaly covers a small part of a frame
    inside = np.flatnonzero(labels)
    component = labels.ravel()[inside]
    values = np.ascontiguousarray(score).ravel()[inside].astype(np.float64)
    sums = np.bincount(component, weights=values, minlength=count)
    maxima = np.full(count, -np.inf)
    np.maximum.at(maxima, component, values)
    sy, sx = scale
    obstacles = []
    for index in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[index])
        if area * sy * sx < min_area:
            continue
        u, v = centroids[index]
        obstacles.append(Obstacle(
            int(np.floor(x * sx)), int(np.floor(y * sy)), int(np.ceil((x + w) * sx)), int(np.ceil((y + h) * sy)),
            int(round(area * sy * sx)), float(sums[index] / area), float(maxima[index]),
            (float((u + 0.5) * sx - 0.5), float((v + 0.5) * sy - 0.5)),
        ))
    return sorted(obstacles, key=lambda o: -o.area)


def ground_point(
    u: float, v: float, intrinsics: tuple[float, float, float, float], camera_height: float, pitch: float
) -> tuple[float, float, float] | None:
    """Intersect the ray through pixel (u, v) with flat ground ``camera_height`` metres below the camera.

    Args:
        u: pixel column.
        v: pixel row.
        intrinsics: (fx, fy, cx, cy).
        camera_height: camera height above the road in metres.
        pitch: downward pitch of the optical axis in radians.

    Returns:
        (x, y, z) in the optical frame, or None for pixels at or above the horizon and for intrinsics so
        extreme (a finite but absurd CameraInfo, e.g. fx = 1e-300) that the point is not finite.
    """
    fx, fy, cx, cy = intrinsics
    with np.errstate(all="ignore"):  # overflow and inf * 0 are handled below, not printed
        ray = np.array([(u - cx) / fx, (v - cy) / fy, 1.0])
        down = np.array([0.0, np.cos(pitch), np.sin(pitch)])  # world "down" seen from the pitched camera
        along = float(ray @ down)
        if not along > 1e-6:
            return None
        point = ray * (camera_height / along)
    if not np.isfinite(point).all():
        return None
    return (float(point[0]), float(point[1]), float(point[2]))
