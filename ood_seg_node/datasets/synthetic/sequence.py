# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The public face of the synthetic world: a drive sequence of frames, deterministic in seed and index.

Why it exists: datasets, training and the demo read the world as a sequence of `Frame` records; this
module validates the arguments, builds the world once and renders frames on access.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator

import numpy as np

from ood_seg_node.camera import CameraView
from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.datasets.synthetic.builder import _Builder
from ood_seg_node.datasets.synthetic.camera import CameraModel, _rotation
from ood_seg_node.datasets.synthetic.constants import _VIEW_AHEAD
from ood_seg_node.datasets.synthetic.render import _Renderer

_ODOM_FROM_WORLD = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


class SyntheticSequence:
    """A drive along a procedural street, rendered frame by frame (deterministic in seed and index).

    The camera moves forward along its lane at ``speed_mps``; frame ``i`` is taken at time ``i / fps``.
    Unknown obstacles (``semantic`` 255, ``ood_gt`` 1) lie on the ego lane at fixed world positions, so
    they grow as the car approaches; ``ood_gt`` is 0 on visible road (markings included) and 255 elsewhere.
    The world, its layout and its weather depend only on ``seed``; ``obstacles=False`` renders the same
    world without them (for segmenter training).

    Args:
        seed: world seed (>= 0).
        frames: number of frames (>= 1).
        height: image height in pixels.
        width: image width in pixels; the focal length scales with it.
        obstacles: whether to place unknown obstacles on the road.
        speed_mps: ego speed in metres per second (>= 0).
        fps: frame rate (> 0).

    Raises:
        DatasetError: an argument is out of range.
    """

    def __init__(
        self,
        seed: int,
        frames: int,
        *,
        height: int = 256,
        width: int = 512,
        obstacles: bool = True,
        speed_mps: float = 8.0,
        fps: float = 10.0,
    ) -> None:
        if int(seed) != seed or seed < 0:
            raise DatasetError(f"synthetic: seed must be a non-negative integer, got {seed!r}")
        if int(frames) != frames or frames < 1:
            raise DatasetError(f"synthetic: frames must be a positive integer, got {frames!r}")
        if height < 16 or width < 16:
            raise DatasetError(f"synthetic: image size must be at least 16x16, got {height}x{width}")
        if not (speed_mps >= 0 and math.isfinite(speed_mps)) or not (fps > 0 and math.isfinite(fps)):
            raise DatasetError(f"synthetic: need speed_mps >= 0 and fps > 0, got {speed_mps} and {fps}")
        self.seed = int(seed)
        self.frames = int(frames)
        self.speed_mps = float(speed_mps)
        self.fps = float(fps)
        self.camera = CameraModel.for_size(int(height), int(width))
        self.sequence = f"synthetic_s{self.seed:04d}"
        length = self.speed_mps * self.frames / self.fps
        self._world = _Builder(self.seed, length + _VIEW_AHEAD + 40.0, obstacles).w
        self._renderer = _Renderer(self._world, self.camera)

    def __len__(self) -> int:
        return self.frames

    def __getitem__(self, index: int) -> Frame:
        if index < 0:
            index += self.frames
        if not 0 <= index < self.frames:
            raise IndexError(f"{self.sequence}: frame {index} out of range 0..{self.frames - 1}")
        image, semantic, ood, depth = self._renderer.render(
            *self.pose(index), index / self.fps, np.random.default_rng([self.seed, index, 7])
        )
        return Frame(
            image=image,
            ood_gt=ood,
            semantic=semantic,
            name=f"{self.sequence}_{index:06d}",
            sequence=self.sequence,
            index=index,
            depth=depth,
            view=self.view(index),
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(self.frames):
            yield self[i]

    def under(self, *, wet: float) -> SyntheticSequence:
        """The same drive (layout, obstacles, poses, labels) rendered by the world with a wet road.

        ``wet`` in [0, 1]: darker asphalt and puddles that reflect the sky, which image-space rain cannot
        draw. (The world has no light sources, street lamps or headlights, so it does not render night: its
        night would be a uniform dimming, which image-space exposure models as well.)
        """
        if not 0.0 <= wet <= 1.0:
            raise DatasetError(f"synthetic: wet must lie in [0, 1], got {wet}")
        variant = copy.copy(self)
        variant._world = dataclasses.replace(self._world, wet=float(wet))
        variant._renderer = _Renderer(variant._world, self.camera)
        return variant

    def view(self, index: int) -> CameraView:
        """The camera at a frame: intrinsics, mount above the flat road, and its pose in an ``odom`` frame.

        The world is x right, y up, z along the road; ``odom`` is the ROS convention (x forward, y left, z up,
        right-handed), so the base pose of ``pose @ inv(mount_pose(...))`` is a yaw on the ground, as
        odometry reports it.
        """
        position, yaw = self.pose(index)
        camera = self.camera
        world_from_camera = np.eye(4)
        world_from_camera[:3, :3] = _rotation(yaw, camera.pitch_rad).T
        world_from_camera[:3, 3] = position
        return CameraView((camera.fx, camera.fy, camera.cx, camera.cy), camera.height_m, camera.pitch_rad,
                          _ODOM_FROM_WORLD @ world_from_camera)

    def pose(self, index: int) -> tuple[np.ndarray, float]:
        """World position of the camera (x, y, z; y up, z along the road) and its heading yaw at a frame."""
        z = self.speed_mps * index / self.fps
        w = self._world
        return w.at(w.s_ego, z, self.camera.height_m), w.yaw(z)
