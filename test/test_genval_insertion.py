# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import cv2
import numpy as np
import pytest

from ood_seg_node.genval.geometry import GroundCamera
from ood_seg_node.genval.insertion import (
    InsertionError,
    ObjectBank,
    _render_cutout,
    insert_objects,
)

H, W = 128, 256


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """Sky above, a mid-grey textured road from row 64 down, a verge on the right."""
    rng = np.random.default_rng(7)
    image = np.empty((H, W, 3), np.uint8)
    image[:64] = (150, 180, 220)
    image[64:] = (95, 95, 100)
    image[64:] += rng.integers(0, 6, (H - 64, W, 1)).astype(np.uint8)
    drivable = np.zeros((H, W), bool)
    drivable[64:, :200] = True
    image[64:, 200:] = (60, 120, 50)
    return image, drivable


def _square_bank(height_m: float = 0.5) -> ObjectBank:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = (220, 40, 30)
    rgba[..., 3] = 255
    return ObjectBank([rgba], [height_m])


@pytest.fixture(scope="module")
def bank() -> ObjectBank:
    return ObjectBank.procedural(12, seed=3)


def test_gt_convention_and_exact_alpha():
    image, drivable = _scene()
    bank = _square_bank()
    out = insert_objects(image, drivable, bank=bank, count=1, seed=0)
    assert set(np.unique(out.ood_gt)) <= {0, 1, 255}
    ((x0, y0, x1, y1),) = out.boxes
    _, alpha = _render_cutout(bank.cutouts[0], y1 - y0, x1 - x0)
    expected = np.zeros((H, W), bool)
    expected[y0:y1, x0:x1] = alpha >= 0.5
    np.testing.assert_array_equal(out.ood_gt == 1, expected)
    assert expected.any()
    assert drivable[out.ood_gt == 0].all()
    np.testing.assert_array_equal(out.ood_gt == 255, ~drivable & ~expected)


def test_procedural_objects_stand_on_drivable_below_horizon(bank):
    image, drivable = _scene()
    out = insert_objects(image, drivable, bank=bank, count=6, seed=1)
    assert len(out.boxes) >= 3
    horizon = GroundCamera.default(H, W).horizon
    gt1 = out.ood_gt == 1
    covered = np.zeros((H, W), int)
    for x0, y0, x1, y1 in out.boxes:
        assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
        assert y1 - y0 >= 6 and y1 - y0 <= H / 2
        assert drivable[y1 - 1, x0:x1].all()  # the footprint row
        assert y1 - 1 > horizon
        assert gt1[y0:y1, x0:x1].any()
        covered[y0:y1, x0:x1] += 1
    assert covered.max() == 1  # no overlaps
    assert not gt1[covered == 0].any()


def test_perspective_lower_is_larger():
    image, _ = _scene()
    bank = _square_bank()
    sizes = []
    for row in (80, 120):
        band = np.zeros((H, W), bool)
        band[row] = True
        ((x0, y0, x1, y1),) = insert_objects(image, band, bank=bank, count=1, seed=0).boxes
        assert y1 - 1 == row
        sizes.append(y1 - y0)
    cam = GroundCamera.default(H, W)
    assert sizes[1] > 2 * sizes[0]
    assert sizes == [round(cam.pixels_for(0.5, 80)), round(cam.pixels_for(0.5, 120))]


def test_deterministic_by_seed(bank):
    image, drivable = _scene()
    a = insert_objects(image, drivable, bank=bank, count=4, seed=5)
    b = insert_objects(image, drivable, bank=bank, count=4, seed=5)
    c = insert_objects(image, drivable, bank=bank, count=4, seed=6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.ood_gt, b.ood_gt)
    assert a.boxes == b.boxes
    assert a.boxes != c.boxes and not np.array_equal(a.image, c.image)
    p1, p2 = ObjectBank.procedural(3, seed=2), ObjectBank.procedural(3, seed=2)
    assert all(np.array_equal(u, v) for u, v in zip(p1.cutouts, p2.cutouts)) and p1.heights_m == p2.heights_m
    assert all(0.05 < h <= 1.0 for h in p1.heights_m)


def test_existing_labels_preserved(bank):
    image, drivable = _scene()
    given = np.where(drivable, 0, 255).astype(np.uint8)
    given[100:110, 20:40] = 1
    out = insert_objects(image, drivable, bank=bank, count=5, seed=2, ood_gt=given)
    assert (out.ood_gt[100:110, 20:40] == 1).all()
    for x0, y0, x1, y1 in out.boxes:  # not pasted over the labelled anomaly
        assert x1 <= 20 or x0 >= 40 or y1 <= 100 or y0 >= 110
    assert (out.ood_gt[given == 255] != 0).all()


def test_from_folder_rgba_colour_order(tmp_path):
    bgra = np.zeros((30, 20, 4), np.uint8)
    bgra[5:25, 4:16] = (10, 20, 200, 255)  # red in OpenCV's BGR order
    assert cv2.imwrite(str(tmp_path / "red.png"), bgra)
    assert cv2.imwrite(str(tmp_path / "plain.png"), np.full((10, 10, 3), 128, np.uint8))  # RGB: skipped
    bank = ObjectBank.from_folder(tmp_path, seed=0)
    assert len(bank) == 1
    (cut,) = bank.cutouts
    assert cut.shape == (20, 12, 4)  # cropped to the alpha
    assert tuple(cut[0, 0]) == (200, 20, 10, 255)
    assert 0.3 <= bank.heights_m[0] <= 1.0
    assert len(bank.combined(_square_bank())) == 2


def test_from_folder_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InsertionError, match="no usable RGBA"):
        ObjectBank.from_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InsertionError, match="broken.png"):
        ObjectBank.from_folder(tmp_path)


def test_no_drivable_and_zero_count(bank):
    image, drivable = _scene()
    out = insert_objects(image, np.zeros((H, W), bool), bank=bank, count=3, seed=0)
    np.testing.assert_array_equal(out.image, image)
    assert out.boxes == [] and (out.ood_gt == 255).all()
    out = insert_objects(image, drivable, bank=bank, count=0, seed=0)
    np.testing.assert_array_equal(out.image, image)
    assert out.boxes == []
    np.testing.assert_array_equal(out.ood_gt, np.where(drivable, 0, 255))


def test_shadow_darkens_road_below_foot():
    image, drivable = _scene()
    out = insert_objects(image, drivable, bank=_square_bank(0.4), count=1, seed=4)
    ((x0, y0, x1, y1),) = out.boxes
    assert y1 < H
    cx = (x0 + x1) // 2
    before = image[y1, cx].astype(float).mean()
    after = out.image[y1, cx].astype(float).mean()
    assert after < 0.9 * before
    assert out.ood_gt[y1, cx] == 0  # shadow stays drivable ground truth
    far = (slice(64, H), slice(0, 200))
    changed = np.abs(out.image.astype(int) - image.astype(int)).max(-1)[far]
    assert changed.sum() > 0 and (changed[: y0 - 64 - 8] == 0).all()


def test_colour_matched_toward_road():
    dark, drivable = _scene()
    dark[64:, :200] = 30
    bright = dark.copy()
    bright[64:, :200] = 200
    bank = _square_bank()
    lum = []
    for img in (dark, bright):
        out = insert_objects(img, drivable, bank=bank, count=1, seed=0)
        m = out.ood_gt == 1
        lum.append(out.image[m].astype(float).mean())
    assert lum[0] < lum[1]


def test_validation():
    image, drivable = _scene()
    bank = _square_bank()
    with pytest.raises(InsertionError, match="HxWx3 uint8"):
        insert_objects(image.astype(np.float32), drivable, bank=bank, count=1, seed=0)
    with pytest.raises(InsertionError, match="drivable"):
        insert_objects(image, drivable[:10], bank=bank, count=1, seed=0)
    with pytest.raises(InsertionError, match="count"):
        insert_objects(image, drivable, bank=bank, count=-1, seed=0)
    with pytest.raises(InsertionError):
        ObjectBank([np.zeros((4, 4, 3), np.uint8)], [0.5])
