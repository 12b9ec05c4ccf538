# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import numpy as np
import pytest

from ood_seg_node.obstacles import find_obstacles, ground_point


def test_components_with_min_area_and_statistics():
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:8] = True  # 20 px
    mask[10, 10] = True  # 1 px, filtered
    mask[12:14, 20:22] = True  # 4 px
    mask[14, 22] = True  # diagonal neighbour: same component with 8-connectivity
    score = np.zeros((20, 30), np.float32)
    score[2:6, 3:8] = 0.5
    score[3, 4] = 0.9
    obstacles = find_obstacles(mask, score, min_area=3)
    assert [o.area for o in obstacles] == [20, 5]
    big = obstacles[0]
    assert (big.x0, big.y0, big.x1, big.y1) == (3, 2, 8, 6)
    assert big.max_score == pytest.approx(0.9)
    assert big.mean_score == pytest.approx((19 * 0.5 + 0.9) / 20)
    assert big.foot == (5.0, 5.0)
    assert find_obstacles(np.zeros((5, 5), bool), np.zeros((5, 5)), 1) == []


def test_native_components_are_reported_in_output_pixels():
    """A stride-4 mask: boxes, areas, centroids and the area filter in the published image's pixels."""
    mask = np.zeros((8, 16), bool)
    mask[2:4, 3:6] = True  # 6 native px = 96 output px
    mask[6, 12] = True  # 1 native px = 16 output px: below min_area 20
    score = np.where(mask, 0.7, 0.0).astype(np.float32)
    (obstacle,) = find_obstacles(mask, score, min_area=20, scale=(4.0, 4.0))
    assert (obstacle.x0, obstacle.y0, obstacle.x1, obstacle.y1, obstacle.area) == (12, 8, 24, 16, 96)
    assert obstacle.centroid == pytest.approx((17.5, 11.5))  # native (4, 2.5) -> pixel centres scaled
    assert obstacle.mean_score == pytest.approx(0.7)
    # the same mask upsampled to the output by nearest neighbour gives the same box and area at scale 1
    (full,) = find_obstacles(np.kron(mask, np.ones((4, 4), bool)), np.kron(score, np.ones((4, 4))), min_area=20)
    assert (full.x0, full.y0, full.x1, full.y1, full.area) == (12, 8, 24, 16, 96)
    assert full.centroid == pytest.approx(obstacle.centroid)


def test_ground_point_on_a_level_and_a_pitched_camera():
    intrinsics = (100.0, 100.0, 50.0, 40.0)
    # level camera 1.5 m high: a pixel 30 rows below the centre sees the ground at z = 1.5 * 100 / 30
    x, y, z = ground_point(50.0, 70.0, intrinsics, 1.5, 0.0)
    assert (x, y, z) == pytest.approx((0.0, 1.5, 5.0))
    assert ground_point(50.0, 40.0, intrinsics, 1.5, 0.0) is None  # horizon
    assert ground_point(50.0, 10.0, intrinsics, 1.5, 0.0) is None  # sky
    # pitched down: the optical centre hits the ground at distance h / sin(pitch) along the axis
    pitch = math.radians(10)
    x, y, z = ground_point(50.0, 40.0, intrinsics, 1.5, pitch)
    assert math.hypot(y, z) == pytest.approx(1.5 / math.sin(pitch))
