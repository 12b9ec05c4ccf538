# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A procedural Lost&Found-style street world: the embedded default dataset.

Why it exists: the package must run end to end (segmenter training, OOD-head training, demo, evaluation)
without downloading any dataset. This package renders temporally coherent drive sequences through a
pinhole camera: a textured road with markings and inlier clutter (manholes, patches, cracks, shadows,
puddles), sidewalks, buildings, vegetation, street furniture, vehicles and pedestrians, each pixel labelled
with a Cityscapes trainId, plus unknown obstacles lying on the road (semantic 255, ``ood_gt`` 1).

How: the world is a list of planar faces fixed in world coordinates (built once per seed). Each frame
computes per-pixel ground coordinates analytically, then rasterises the faces near-to-far into a z-buffer
with ``cv2.fillPoly`` and shades them in surface coordinates, so textures stick to the world and objects
grow as the camera approaches. Only numpy and OpenCV are used.

Modules, from the bottom up: ``constants`` (label ids, clipping and view distances, world axes),
``camera`` (pinhole model and pose rotation), ``textures`` (noise textures, materials, colours, shading),
``geometry`` (parts, faces, outlines, boxes), ``raster`` (projection, near clipping, z-buffered face
drawing, lighting, ground polygons), ``obstacles`` (unknown objects and ``make_obstacle_patch``),
``world`` (what one seed fixes, and the builder's shared state), ``appearance``, ``road``, ``roadside``,
``furniture`` and ``vehicles`` (the builder's parts), ``builder`` (composes them), ``render`` (one
frame: sky, ground, faces, atmosphere, sensor) and ``sequence`` (the public drive sequence).
"""

from __future__ import annotations

from ood_seg_node.datasets.synthetic.camera import CameraModel
from ood_seg_node.datasets.synthetic.obstacles import make_obstacle_patch
from ood_seg_node.datasets.synthetic.sequence import SyntheticSequence

__all__ = ["CameraModel", "SyntheticSequence", "make_obstacle_patch"]
