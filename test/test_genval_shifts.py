# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""GenVal covariate shifts: shape, determinism, severity ordering, depth-aware fog, parsing and input errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ood_seg_node.genval.shifts import SEVERITIES, SHIFTS, SOURCES, ShiftError, apply_shift, parse_shifts

H, W = 96, 160
DETERMINISTIC = {"fog", "jpeg"}  # no randomness: the seed does not matter


def _scene(h: int = H, w: int = W) -> np.ndarray:
    """Sky gradient over a noisy road, a lane line and high-contrast posts: texture at all scales."""
    rng = np.random.default_rng(7)
    image = np.zeros((h, w, 3), np.float64)
    horizon = int(0.47 * h)
    ramp = np.linspace(0.0, 1.0, horizon)[:, None, None]
    image[:horizon] = np.array([120, 170, 235]) * (1 - ramp) + np.array([200, 220, 250]) * ramp
    image[horizon:] = np.array([90, 90, 95]) + rng.integers(-15, 16, (h - horizon, w, 3))
    image[horizon:, w // 2 - 2: w // 2 + 2] = 240
    for i in range(4):
        x = 8 + i * (w // 4)
        image[horizon - h // 5: horizon + h // 10, x: x + w // 14] = (20, 20, 20) if i % 2 else (250, 240, 60)
        image[horizon - h // 10: horizon, x + 2: x + 5] = (230, 30, 30)
    return np.clip(image, 0, 255).astype(np.uint8)


SCENE = _scene()


@pytest.fixture(scope="module")
def shifted() -> dict[tuple[str, int], np.ndarray]:
    return {(s, v): apply_shift(SCENE, s, v, seed=3) for s in SHIFTS for v in SEVERITIES}


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _high_freq(image: np.ndarray) -> float:
    return float(np.mean(np.abs(cv2.Laplacian(_luma(image), cv2.CV_64F))))


# how each shift's strength shows up, as a value that must grow with severity
STRENGTH = {
    "fog": lambda out: -float(_luma(out).std()),
    "night": lambda out: -float(_luma(out).mean()),
    "rain": lambda out: _mad(out, SCENE),
    "snow": lambda out: _mad(out, SCENE),
    "glare": lambda out: _mad(out, SCENE),
    "motion_blur": lambda out: -_high_freq(out),
    "noise": lambda out: -_psnr(out, SCENE),
    "jpeg": lambda out: -_psnr(out, SCENE),
}


def test_registry_is_complete():
    assert set(SOURCES) == set(SHIFTS) == set(STRENGTH)
    assert all(isinstance(text, str) and text and "\n" not in text for text in SOURCES.values())
    assert SEVERITIES == (1, 2, 3)


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("shift", SHIFTS)
def test_shape_dtype_and_changes_input(shifted, shift, severity):
    out = shifted[shift, severity]
    assert out.shape == SCENE.shape and out.dtype == np.uint8
    assert _mad(out, SCENE) > 0.5


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("shift", SHIFTS)
def test_deterministic_by_seed(shifted, shift, severity):
    again = apply_shift(SCENE.copy(), shift, severity, seed=3)
    np.testing.assert_array_equal(again, shifted[shift, severity])
    other = apply_shift(SCENE, shift, severity, seed=4)
    if shift in DETERMINISTIC:
        np.testing.assert_array_equal(other, shifted[shift, severity])
    else:
        assert not np.array_equal(other, shifted[shift, severity])


def test_does_not_touch_global_rng_or_input():
    image = SCENE.copy()
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    for shift in SHIFTS:
        apply_shift(image, shift, 2, seed=1)
    assert np.random.random() == expected
    np.testing.assert_array_equal(image, SCENE)


@pytest.mark.parametrize("shift", SHIFTS)
def test_severity_is_monotone(shifted, shift):
    baseline = STRENGTH[shift](SCENE)  # the unshifted image is the weakest of all
    for seed in (3, 0, 11):
        outs = [shifted[shift, v] if seed == 3 else apply_shift(SCENE, shift, v, seed=seed) for v in SEVERITIES]
        strengths = [STRENGTH[shift](out) for out in outs]
        assert baseline < strengths[0] < strengths[1] < strengths[2], (shift, seed, baseline, strengths)


def test_motion_blur_keeps_content_in_place():
    # a centred kernel spreads an edge symmetrically: the mean column of a bright bar stays put
    image = np.zeros((H, W, 3), np.uint8)
    image[:, 70:80] = 255
    for seed in range(3):
        out = apply_shift(image, "motion_blur", 3, seed=seed)
        profile = _luma(out)[H // 2]
        centre = float((profile * np.arange(W)).sum() / profile.sum())
        assert abs(centre - 74.5) < 0.25


def test_fog_uses_depth_far_fogged_more_than_near():
    depth = np.full((H, W), 3.0)
    depth[:, W // 2:] = 200.0
    for severity in SEVERITIES:
        out = apply_shift(SCENE, "fog", severity, seed=0, depth=depth)
        near = _mad(out[:, : W // 2], SCENE[:, : W // 2])
        far = _mad(out[:, W // 2:], SCENE[:, W // 2:])
        assert far > 2.5 * near
        # far half: contrast mostly gone; near half keeps most of it
        assert _luma(out[:, W // 2:]).std() < 0.3 * _luma(SCENE[:, W // 2:]).std()
        assert _luma(out[:, : W // 2]).std() > 0.5 * _luma(SCENE[:, : W // 2]).std()
    prior = apply_shift(SCENE, "fog", 2, seed=0)
    assert not np.array_equal(prior, apply_shift(SCENE, "fog", 2, seed=0, depth=depth))
    # flat-ground prior: the bottom rows (near road) keep more contrast than the rows at the horizon
    assert _mad(prior[-10:], SCENE[-10:]) < _mad(prior[40:50], SCENE[40:50])


@pytest.mark.parametrize(("size", "fill"), [((2, 2), 128), ((5, 7), 0), ((16, 16), 255), ((33, 17), None)])
def test_small_odd_and_flat_images(size, fill):
    image = _scene(*size) if fill is None else np.full((*size, 3), fill, np.uint8)
    for shift in SHIFTS:
        out = apply_shift(image, shift, 3, seed=0)
        assert out.shape == image.shape and out.dtype == np.uint8


@pytest.mark.parametrize(("text", "expected"), [
    ("fog,night", ("fog", "night")),
    (" Fog , NIGHT ,", ("fog", "night")),
    ("jpeg,noise,jpeg", ("jpeg", "noise")),
    ("all", SHIFTS),
    ("ALL", SHIFTS),
    ("none", ()),
    ("", ()),
    ("motion_blur", ("motion_blur",)),
])
def test_parse_shifts(text, expected):
    assert parse_shifts(text) == expected


@pytest.mark.parametrize("text", ["fgo", "fog,haze", "all,fog", "none,fog"])
def test_parse_shifts_rejects_unknown_and_lists_valid(text):
    with pytest.raises(ShiftError) as info:
        parse_shifts(text)
    assert all(name in str(info.value) for name in SHIFTS)


def test_unknown_shift_or_severity():
    with pytest.raises(ShiftError, match="valid: fog, night"):
        apply_shift(SCENE, "haze", 1, seed=0)
    for severity in (0, 4, True, 1.5):
        with pytest.raises(ShiftError, match="valid: 1, 2, 3"):
            apply_shift(SCENE, "fog", severity, seed=0)
    assert issubclass(ShiftError, ValueError)


@pytest.mark.parametrize("image", [
    SCENE[..., 0],
    SCENE.astype(np.float32),
    np.concatenate([SCENE, SCENE[..., :1]], axis=2),
    SCENE[:1],
], ids=["gray", "float", "rgba", "one-row"])
def test_bad_image(image):
    with pytest.raises(ValueError, match="HxWx3 uint8") as info:
        apply_shift(image, "noise", 1, seed=0)
    assert "\n" not in str(info.value)


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        apply_shift(SCENE, "fog", 1, seed=0, depth=np.ones((H, W + 1)))
    bad = np.ones((H, W))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="depth"):
        apply_shift(SCENE, "fog", 1, seed=0, depth=bad)
    with pytest.raises(ValueError, match="depth"):
        apply_shift(SCENE, "fog", 1, seed=0, depth=-np.ones((H, W)))
