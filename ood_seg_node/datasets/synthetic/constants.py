# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Label ids and scale constants shared by the world builder, the rasteriser and the renderer.

Why it exists: every part of the synthetic world labels pixels with the same Cityscapes trainIds and
clips, culls and textures with the same distances, so they are defined once here.
"""

from __future__ import annotations

import numpy as np

from ood_seg_node.cityscapes import IGNORE_INDEX, TRAIN_ID

_ROAD, _SIDEWALK, _BUILDING, _WALL, _FENCE = (
    TRAIN_ID[n] for n in ("road", "sidewalk", "building", "wall", "fence")
)
_POLE, _LIGHT, _SIGN, _VEG, _TERRAIN = (
    TRAIN_ID[n] for n in ("pole", "traffic light", "traffic sign", "vegetation", "terrain")
)
_SKY, _PERSON, _CAR, _TRUCK, _BUS, _BICYCLE = (
    TRAIN_ID[n] for n in ("sky", "person", "car", "truck", "bus", "bicycle")
)
_OBSTACLE = IGNORE_INDEX

_NEAR = 0.3  # m, near clipping plane
_FAR_GROUND = 350.0  # m, ground beyond this is covered by the distant backdrop
_VIEW_AHEAD = 240.0  # m, faces farther ahead than this are not rendered
_TEX = 256  # texels per side of the tileable noise textures
_UP = np.array([0.0, 1.0, 0.0])

# World coordinates: X right, Y up, Z forward (along the road). Road-aligned coordinates (s, Z): s is the
# lateral offset from the road centre line x_c(Z); the road is gently curved, so X = x_c(Z) + s.
