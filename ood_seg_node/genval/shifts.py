# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Label-preserving covariate shifts for GenVal-style validation (Loiseau et al., ECCV 2024).

Why it exists: a segmenter and its OOD head should be checked on the user's own frames under weather, light and
sensor conditions the validation set lacks. Each shift changes appearance only (no content moves, except the
few pixels a blur kernel spreads), so the frame's labels stay valid; three severities give a degradation curve.
Everything is deterministic in (image, shift, severity, seed): randomness comes from a generator seeded with
``[seed, shift index]`` (shared by the severities, so they differ only in strength) and albumentations gets a
seed derived from it, never from global state.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from ood_seg_node.genval.geometry import GroundCamera

__all__ = ["SEVERITIES", "SHIFTS", "SOURCES", "ShiftError", "apply_shift", "parse_shifts"]

SHIFTS: tuple[str, ...] = ("fog", "night", "rain", "snow", "glare", "motion_blur", "noise", "jpeg")
SEVERITIES: tuple[int, ...] = (1, 2, 3)
SOURCES: dict[str, str] = {
    "fog": "own code: Koschmieder model I = J*t + A*(1-t), t = exp(-beta*depth), flat-ground depth prior",
    "night": "own code: exposure cut in linear light, gamma, blue/orange cast, Poisson-Gaussian noise, bloom",
    "rain": "albumentations RandomRain + own wet darkening and contrast drop",
    "snow": "albumentations RandomSnow (bleach snow cover) + own seeded flakes and snowfall haze",
    "glare": "albumentations RandomSunFlare + own overexposure (gain, clipping, veiling glare)",
    "motion_blur": "own linear kernel with a seeded near-horizontal angle, applied with cv2.filter2D",
    "noise": "own Poisson-Gaussian (shot + read) noise",
    "jpeg": "cv2.imencode JPEG at quality 30/15/6",
}


class ShiftError(ValueError):
    """Unknown shift name or severity (message lists the valid values)."""


def parse_shifts(text: str) -> tuple[str, ...]:
    """'fog,night' -> ('fog', 'night'); 'all' -> SHIFTS; 'none' or '' -> (); unknown name -> ShiftError."""
    names = [part.strip().lower() for part in (text or "").split(",") if part.strip()]
    if names in ([], ["none"]):
        return ()
    if names == ["all"]:
        return SHIFTS
    unknown = [name for name in names if name not in SHIFTS]
    if unknown:
        raise ShiftError(f"unknown shift(s) {', '.join(unknown)}; valid: {', '.join(SHIFTS)}, or 'all' / 'none'")
    return tuple(dict.fromkeys(names))


def _to_linear(x: np.ndarray) -> np.ndarray:
    return x ** 2.2


def _to_srgb(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0) ** (1 / 2.2)


def _luma(x: np.ndarray) -> np.ndarray:
    return x @ np.array([0.299, 0.587, 0.114], dtype=x.dtype)


def _albumentations(transforms: list, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Run albumentations transforms once with a seed drawn from ``rng`` (2.x seeds per Compose instance)."""
    import albumentations as A  # slow import (~3 s): only when a weather shift is asked for

    pipeline = A.Compose(transforms, seed=int(rng.integers(0, 2**31 - 1)))
    return np.ascontiguousarray(pipeline(image=image)["image"])


def _fog(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Homogeneous fog: attenuation grows with distance, so far objects fade first, as in real fog."""
    visibility = {1: 150.0, 2: 75.0, 3: 35.0}[severity]
    beta = -np.log(0.02) / visibility  # Koschmieder: contrast drops to 2 % at the visibility distance
    t = np.exp(-beta * depth)[..., None]
    top = x[: max(1, x.shape[0] // 4)].reshape(-1, 3)
    bright = top[_luma(top) >= np.quantile(_luma(top), 0.95)].mean(axis=0)
    # airlight: the bright top rows (usually sky) pulled towards a neutral grey-white, never dark
    airlight = 0.5 * bright + 0.5 * 0.85
    airlight = airlight * max(1.0, 0.75 / max(float(_luma(airlight[None])[0]), 1e-6))
    return x * t + np.clip(airlight, 0.0, 1.0) * (1.0 - t)


def _night(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Low light: fewer photons (so relatively more noise), tinted light, and bloom around light sources."""
    gain, gamma = {1: (0.35, 1.1), 2: (0.18, 1.2), 3: (0.08, 1.3)}[severity]
    linear = _to_linear(x)
    lum = _luma(x)[..., None]
    weight = lum ** 2  # moonlit/blue shadows, sodium-lamp/orange highlights
    cast = (1 - weight) * np.array([0.75, 0.9, 1.2]) + weight * np.array([1.2, 0.95, 0.65])
    dark = linear * gain * cast
    highlights = np.maximum(linear - 0.8, 0.0) * cast
    sigma = max(1.0, 0.02 * x.shape[1])
    glow = cv2.GaussianBlur(highlights, (0, 0), sigmaX=sigma, sigmaY=sigma)
    dark = dark + 0.6 * gain * glow + gain * highlights
    full_well = 600.0  # photons at full scale: after the exposure cut few are left, so shot noise shows
    photons = rng.poisson(np.clip(dark, 0, 1) * full_well) + rng.normal(0.0, 3.0, dark.shape)
    return _to_srgb(photons / full_well) ** gamma


def _rain(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray, *,
          wet_scene: bool = True) -> np.ndarray:
    """Rain streaks from albumentations, then the wet-scene look: lower contrast (spray, wet optics).

    Surfaces also darken, unless the scene was rendered wet already (``wet_scene=False``).
    """
    import albumentations as A

    h = x.shape[0]
    rain_type, blur, brightness, contrast, darken = {
        1: ("drizzle", 3, 0.9, 0.9, 0.95), 2: ("heavy", 5, 0.8, 0.8, 0.9), 3: ("torrential", 7, 0.7, 0.65, 0.85),
    }[severity]
    drop_length = int(np.clip(round(h * (0.06 + 0.03 * severity)), 1, h - 1))
    rain = A.RandomRain(slant_range=(-12, 12), drop_length=drop_length, drop_width=1, drop_color=(200, 200, 200),
                        blur_value=blur, brightness_coefficient=brightness, rain_type=rain_type, p=1.0)
    y = _albumentations([rain], _to_uint8(x), rng).astype(np.float64) / 255.0
    mean = y.mean(axis=(0, 1), keepdims=True)
    return (mean + (y - mean) * contrast) * (darken if wet_scene else 1.0)


def _snow(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Snow cover (albumentations bleach: darker surfaces whitened), falling flakes and a light snowfall haze."""
    import albumentations as A

    h, w = x.shape[:2]
    point, coeff, haze = {1: (0.1, 1.3, 0.05), 2: (0.25, 1.6, 0.1), 3: (0.4, 2.0, 0.18)}[severity]
    # method="texture" is avoided: in 2.0.8 it adds the texture to the HSV hue channel and wraps uint8 (black blobs)
    snow = A.RandomSnow(snow_point_range=(point, point), brightness_coeff=coeff, method="bleach", p=1.0)
    y = _albumentations([snow], _to_uint8(x), rng).astype(np.float64) / 255.0
    y = y * (1 - haze) + 0.9 * haze
    flakes = np.zeros((h, w), dtype=np.float32)
    count = int(h * w * 0.0012 * severity ** 2) + 1
    radius = max(1, round(0.004 * w * severity))
    for cx, cy in zip(rng.integers(0, w, count), rng.integers(0, h, count)):
        cv2.circle(flakes, (int(cx), int(cy)), radius, 1.0, -1)
    flakes = cv2.GaussianBlur(flakes, (0, 0), sigmaX=0.5 * radius)[..., None] * 0.85
    return y * (1 - flakes) + flakes


def _glare(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Low sun: a lens flare, overexposure that clips highlights, and a veil that washes out contrast."""
    import albumentations as A

    h, w = x.shape[:2]
    gain, veil = {1: (1.3, 0.1), 2: (1.7, 0.2), 3: (2.3, 0.35)}[severity]
    flare = A.RandomSunFlare(flare_roi=(0.1, 0.0, 0.9, 0.35), src_radius=max(2, int(0.12 * severity * w)),
                             num_flare_circles_range=(2 + 2 * severity, 4 + 2 * severity), method="overlay", p=1.0)
    y = _albumentations([flare], _to_uint8(x), rng).astype(np.float64) / 255.0
    y = _to_srgb(_to_linear(y) * gain)
    return y * (1 - veil) + veil


def _motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Ego-motion or panning blur: a centred line kernel (content is smeared symmetrically, not moved)."""
    length = max({1: 3, 2: 5, 3: 9}[severity], int(x.shape[1] * {1: 0.012, 2: 0.025, 3: 0.05}[severity]) | 1)
    angle = np.deg2rad(rng.uniform(-15.0, 15.0))
    centre = (length - 1) / 2
    steps = np.linspace(-centre, centre, 4 * length)
    cols, rows = centre + steps * np.cos(angle), centre + steps * np.sin(angle)
    # bilinear splatting: sub-pixel angles change even a 3-tap kernel; symmetric points keep it centred
    kernel = np.zeros((length + 1, length + 1), dtype=np.float64)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = rows - r0, cols - c0
    for dr, dc, weight in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        np.add.at(kernel, (r0 + dr, c0 + dc), weight)
    kernel = kernel[:length, :length].astype(np.float32)
    kernel /= kernel.sum()
    return cv2.filter2D(x.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REFLECT_101)


def _noise(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Sensor noise: signal-dependent shot noise plus signal-independent read noise."""
    read, shot = {1: (0.02, 0.01), 2: (0.045, 0.025), 3: (0.09, 0.06)}[severity]
    return x + np.sqrt(shot ** 2 * x + read ** 2) * rng.standard_normal(x.shape)


def _jpeg(x: np.ndarray, severity: int, rng: np.random.Generator, depth: np.ndarray) -> np.ndarray:
    """Compression artefacts (blocking, ringing, chroma loss) from a low-bitrate link or recorder."""
    quality = {1: 30, 2: 15, 3: 6}[severity]
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(_to_uint8(x), cv2.COLOR_RGB2BGR),
                              [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed to encode JPEG")
    return cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


_SHIFT_FUNCTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator, np.ndarray], np.ndarray]] = {
    "fog": _fog, "night": _night, "rain": _rain, "snow": _snow, "glare": _glare,
    "motion_blur": _motion_blur, "noise": _noise, "jpeg": _jpeg,
}


def apply_shift(image: np.ndarray, shift: str, severity: int, *, seed: int,
                depth: np.ndarray | None = None, road_rendered_wet: bool = False) -> np.ndarray:
    """HxWx3 uint8 RGB -> shifted HxWx3 uint8 RGB of the same size, deterministic in (image, shift, severity, seed).

    ``depth`` is an optional HxW distance in metres (only fog uses it); without it fog uses the flat-ground prior
    :meth:`GroundCamera.default(h, w).depth_map() <ood_seg_node.genval.geometry.GroundCamera.depth_map>`.
    ``road_rendered_wet``: the image already shows the wet road (the synthetic world renders it), so rain only
    adds streaks, spray and optics.
    """
    if shift not in _SHIFT_FUNCTIONS:
        raise ShiftError(f"unknown shift {shift!r}; valid: {', '.join(SHIFTS)}")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ShiftError(f"unknown severity {severity!r} for {shift}; valid: {', '.join(map(str, SEVERITIES))}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 2:
        raise ValueError(f"image must be HxWx3 uint8 RGB (at least 2x2), got shape {image.shape} {image.dtype}")
    h, w = image.shape[:2]
    if depth is None:
        depth = GroundCamera.default(h, w).depth_map()
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (h, w) or np.isnan(depth).any() or (depth < 0).any():
        raise ValueError(f"depth must be an {h}x{w} map of non-negative metres (no NaN), got shape {depth.shape}")
    # severity is left out of the seed on purpose (common random numbers): the three severities of one frame share
    # their random draws (blur angle, noise field, albumentations seed), so a severity curve differs only in strength
    rng = np.random.default_rng([int(seed) % 2**64, SHIFTS.index(shift)])
    x = image.astype(np.float64) / 255.0
    if shift == "rain":
        out = _rain(x, int(severity), rng, depth, wet_scene=not road_rendered_wet)
    else:
        out = _SHIFT_FUNCTIONS[shift](x, int(severity), rng, depth)
    return _to_uint8(out)
