# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Tests for the procedural Lost&Found-style world (ood_seg_node.datasets.synthetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ood_seg_node.cityscapes import NUM_CLASSES, TRAIN_ID
from ood_seg_node.datasets.base import DatasetError, Frame
from ood_seg_node.datasets.synthetic import CameraModel, SyntheticSequence, make_obstacle_patch

H, W = 128, 256
ROAD = TRAIN_ID["road"]


@pytest.fixture(scope="module")
def seq() -> SyntheticSequence:
    return SyntheticSequence(3, 60, height=H, width=W)


def test_frame_fields_and_names(seq: SyntheticSequence) -> None:
    f = seq[5]
    assert isinstance(f, Frame)
    assert f.image.shape == (H, W, 3) and f.image.dtype == np.uint8
    assert f.semantic is not None and f.semantic.shape == (H, W) and f.semantic.dtype == np.uint8
    assert f.ood_gt is not None and f.ood_gt.shape == (H, W) and f.ood_gt.dtype == np.uint8
    assert f.name == "synthetic_s0003_000005"
    assert f.sequence == "synthetic_s0003" and f.index == 5
    assert len(seq) == 60
    assert seq[-1].index == 59
    with pytest.raises(IndexError):
        seq[60]


def test_deterministic_by_seed_and_index(seq: SyntheticSequence) -> None:
    again = SyntheticSequence(3, 60, height=H, width=W)
    for i in (0, 17):
        a, b, c = seq[i], again[i], seq[i]
        for x, y in ((a, b), (a, c)):
            assert np.array_equal(x.image, y.image)
            assert np.array_equal(x.semantic, y.semantic)
            assert np.array_equal(x.ood_gt, y.ood_gt)


def test_different_seeds_differ() -> None:
    a = SyntheticSequence(1, 5, height=H, width=W)[2]
    b = SyntheticSequence(2, 5, height=H, width=W)[2]
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() > 10
    assert (a.semantic != b.semantic).mean() > 0.05


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_label_conventions(seed: int) -> None:
    s = SyntheticSequence(seed, 40, height=H, width=W)
    for i in (0, 20, 39):
        f = s[i]
        sem, ood = f.semantic, f.ood_gt
        assert set(np.unique(sem)) <= set(range(NUM_CLASSES)) | {255}
        assert set(np.unique(ood)) <= {0, 1, 255}
        assert np.array_equal(ood == 1, sem == 255)  # obstacles are the only void
        assert np.array_equal(ood == 0, sem == ROAD)  # the evaluated inlier region is exactly the road
        assert (sem == ROAD).mean() > 0.15  # the road is in view
        assert (sem == TRAIN_ID["sky"]).any() or (sem == TRAIN_ID["building"]).any()


def test_obstacles_present_often_and_small() -> None:
    present, share = [], []
    for seed in range(4):
        s = SyntheticSequence(seed, 80, height=H, width=W)
        for i in range(0, 80, 8):
            n = int((s[i].ood_gt == 1).sum())
            present.append(n > 0)
            share.append(n / (H * W))
    assert 0.5 <= np.mean(present) <= 1.0
    assert 0 < np.mean(share) < 0.02
    assert max(share) < 0.15


def test_obstacles_flag_keeps_the_world() -> None:
    with_obs = SyntheticSequence(5, 30, height=H, width=W)
    without = SyntheticSequence(5, 30, height=H, width=W, obstacles=False)
    drawn = 0
    for i in (0, 10, 20, 29):
        a, b = with_obs[i], without[i]
        assert not (b.semantic == 255).any() and not (b.ood_gt == 1).any()
        keep = a.semantic != 255
        drawn += int((~keep).sum())
        assert np.array_equal(a.semantic[keep], b.semantic[keep])  # obstacles only occlude
    assert drawn > 0


def test_temporal_coherence(seq: SyntheticSequence) -> None:
    def diff(i: int, j: int) -> float:
        return float(np.abs(seq[i].image.astype(np.int16) - seq[j].image.astype(np.int16)).mean())

    near = np.mean([diff(i, i + 1) for i in (10, 30, 50)])
    far = np.mean([diff(i, i + 40) for i in (0, 10, 19)])
    assert near < 0.6 * far


def test_obstacles_grow_as_the_car_approaches() -> None:
    growing = shrinking = 0
    for seed in (0, 1, 2):  # the first obstacles always lie 12-35 m ahead of the start
        s = SyntheticSequence(seed, 40, height=H, width=W)
        areas = [int((s[i].ood_gt == 1).sum()) for i in range(0, 40, 3)]  # 2.4 m closer per step
        for a, b in zip(areas, areas[1:], strict=False):
            if a >= 8 and b >= 8:
                growing += b > a
                shrinking += b < a
    assert growing >= 5
    assert growing > 2 * shrinking


def test_camera_scales_with_width_and_horizon_is_consistent() -> None:
    small, big = CameraModel.for_size(64, 128), CameraModel.for_size(256, 512)
    assert math.isclose(big.fx / small.fx, 4.0) and small.fx == small.fy
    s = SyntheticSequence(4, 3, height=96, width=160)
    cam = s.camera
    assert (cam.width, cam.height) == (160, 96) and s.camera.k.shape == (3, 3)
    horizon = cam.cy - cam.fy * math.tan(cam.pitch_rad)
    sem = s[1].semantic
    ground = np.isin(sem, [ROAD, TRAIN_ID["sidewalk"], TRAIN_ID["terrain"]])
    rows = np.nonzero(ground.any(1))[0]
    assert rows.min() >= math.floor(horizon)  # nothing on the ground plane above the horizon


@pytest.mark.parametrize("size", [(64, 96), (100, 300), (160, 128)])
def test_arbitrary_resolutions(size: tuple[int, int]) -> None:
    f = SyntheticSequence(9, 2, height=size[0], width=size[1])[1]
    assert f.image.shape == (*size, 3)
    assert f.semantic.shape == size and f.ood_gt.shape == size
    assert (f.ood_gt == 0).any()


def test_iteration_yields_all_frames() -> None:
    frames = list(SyntheticSequence(2, 3, height=32, width=64))
    assert [f.index for f in frames] == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=-1, frames=3),
        dict(seed=0, frames=0),
        dict(seed=0, frames=3, height=8),
        dict(seed=0, frames=3, fps=0.0),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict) -> None:
    with pytest.raises(DatasetError, match="synthetic"):
        SyntheticSequence(**kwargs)


def test_obstacle_patch() -> None:
    rng = np.random.default_rng(0)
    fractions = []
    for h, w in ((32, 32), (48, 80), (64, 40)):
        for _ in range(8):
            img, mask = make_obstacle_patch(rng, h, w)
            assert img.shape == (h, w, 3) and img.dtype == np.uint8
            assert mask.shape == (h, w) and mask.dtype == bool
            assert not img[~mask].any()
            fractions.append(mask.mean())
    assert min(fractions) > 0.03 and max(fractions) < 1.0 and np.mean(fractions) > 0.2
    a = make_obstacle_patch(np.random.default_rng(5), 40, 40)
    b = make_obstacle_patch(np.random.default_rng(5), 40, 40)
    c = make_obstacle_patch(np.random.default_rng(6), 40, 40)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(ValueError, match="make_obstacle_patch"):
        make_obstacle_patch(rng, 2, 10)
