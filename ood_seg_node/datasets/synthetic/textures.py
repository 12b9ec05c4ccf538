# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Surface appearance: tileable noise textures, materials, colour helpers and per-pixel shading.

Why it exists: surfaces are shaded in their own (u, v) metres so patterns stick to the world; this module
owns the textures, the material description and the function that turns both into colours.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import cv2
import numpy as np

from ood_seg_node.datasets.synthetic.constants import _TEX


def _band_noise(rng: np.random.Generator, size: int, k0: float, octave_width: float = 0.5) -> np.ndarray:
    """Tileable noise with energy around k0 cycles per tile (log-normal band), zero mean, unit std."""
    spec = np.fft.rfft2(rng.standard_normal((size, size)))
    ky = np.fft.fftfreq(size)[:, None] * size
    kx = np.fft.rfftfreq(size)[None, :] * size
    k = np.maximum(np.hypot(kx, ky), 1e-3)
    spec *= np.exp(-((np.log(k) - math.log(k0)) ** 2) / (2 * octave_width**2))
    out = np.fft.irfft2(spec, s=(size, size))
    out -= out.mean()
    return (out / (out.std() + 1e-9)).astype(np.float32)


def _crack_texture(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """Random-walk cracks (1 = crack) on a tileable float texture."""
    img = np.zeros((size, size), np.uint8)
    for _ in range(count):
        p = rng.uniform(0, size, 2)
        heading = rng.uniform(0, 2 * math.pi)
        pts = []
        for _ in range(int(rng.integers(8, 40))):
            pts.append(p.copy())
            heading += rng.normal(0, 0.5)
            p = p + 6 * np.array([math.cos(heading), math.sin(heading)])
        pts_arr = np.array(pts)
        for dx in (-size, 0, size):  # draw wrapped copies so the texture tiles
            for dy in (-size, 0, size):
                cv2.polylines(
                    img,
                    [np.round(pts_arr + (dx, dy)).astype(np.int32)],
                    False,
                    255,
                    1,
                    cv2.LINE_AA,
                )
    return img.astype(np.float32) / 255.0


@dataclass
class _Textures:
    band: np.ndarray  # features ~8 texels
    coarse: np.ndarray  # features ~40 texels
    cracks: np.ndarray

    @classmethod
    def make(cls, rng: np.random.Generator, crack_count: int = 25) -> _Textures:
        cracks = _crack_texture(rng, 512, crack_count)
        return cls(_band_noise(rng, _TEX, 32.0), _band_noise(rng, _TEX, 6.0), cracks)


def _sample(tex: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear wrap-around lookup of a tileable texture at texel coordinates of any shape."""
    shape = x.shape
    # BORDER_WRAP wraps any coordinate remap can hold in fixed point (|x| < ~6e7 texels), so no np.mod
    xf = np.asarray(x, np.float32).reshape(1, -1)
    yf = np.asarray(y, np.float32).reshape(1, -1)
    size = xf.shape[1]
    if size == 0:
        return np.zeros(shape, np.float32)
    if size < 32000:  # cv2.remap maps must stay below 32767 per side
        return cv2.remap(tex, xf, yf, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).reshape(shape)
    cols = 1024
    pad = (-size) % cols
    xf = np.pad(xf[0], (0, pad)).reshape(-1, cols)
    yf = np.pad(yf[0], (0, pad)).reshape(-1, cols)
    out = cv2.remap(tex, xf, yf, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return out.reshape(-1)[:size].reshape(shape)



@dataclass
class _Material:
    """How a surface looks; ``kind`` selects the pattern, the rest are its parameters (colours in 0..1)."""

    kind: str
    color: tuple[float, float, float]
    color2: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise: float = 0.05
    scale: float = 0.05  # metres per noise texel
    period: float = 1.0
    angle: float = 0.0
    extra: tuple[float, ...] = ()
    emissive: bool = False
    gloss: float = 0.0

    def __post_init__(self) -> None:
        self.c1 = np.asarray(self.color, np.float32)
        self.c2 = np.asarray(self.color2, np.float32)



def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    return colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))


def _rgb(c: np.ndarray) -> tuple[float, float, float]:
    return float(c[0]), float(c[1]), float(c[2])


def _jitter(
    rng: np.random.Generator, c: tuple[float, float, float], amount: float = 0.05
) -> tuple[float, float, float]:
    """A colour with each channel scaled by its own random factor (hue and brightness both vary)."""
    return _rgb(np.clip(np.asarray(c) * (1 + rng.normal(0, amount, 3)), 0, 1))


def _hash2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return x - np.floor(x)


def _shade(
    mat: _Material, u: np.ndarray, v: np.ndarray, tex: _Textures, px_m: float = 0.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (N,3 float32) and optional opacity (N bool) of a material at surface coordinates (metres).

    ``px_m`` is the size of a pixel on the surface; see-through patterns (foliage gaps, fence mesh, slats)
    finer than a few pixels are drawn opaque, as annotators label them, instead of as aliasing speckle.
    """
    c1, c2 = mat.c1, mat.c2
    kind = mat.kind
    if u.size < 12 and kind in ("plain", "mix", "facade", "glass", "leaves"):  # too small to show texture
        return np.broadcast_to(c1, (u.size, 3)).copy(), None
    n = _sample(tex.band, u / mat.scale, v / mat.scale + 37.0) if mat.noise else np.zeros_like(u)
    alpha = None
    if kind == "plain":
        col = c1[None] * (1 + mat.noise * n)[:, None]
    elif kind == "mix":
        w = np.clip(0.5 + 0.6 * _sample(tex.coarse, u / mat.period, v / mat.period), 0, 1)[:, None]
        col = (c1[None] * (1 - w) + c2[None] * w) * (1 + mat.noise * n)[:, None]
    elif kind in ("stripes", "checker"):
        if kind == "stripes":
            t = (u * math.cos(mat.angle) + v * math.sin(mat.angle)) / mat.period
            sel = (t - np.floor(t)) < 0.5
        else:
            sel = ((np.floor(u / mat.period) + np.floor(v / mat.period)) % 2) == 0
        col = np.where(sel[:, None], c1[None], c2[None]) * (1 + mat.noise * n)[:, None]
    elif kind == "facade":
        win_w, win_h, sx, sy, v0, top = mat.extra
        iu, iv = np.floor(u / sx), np.floor((v - v0) / sy)
        fu, fv = u / sx - iu, (v - v0) / sy - iv
        win = (np.abs(fu - 0.5) < win_w / 2) & (np.abs(fv - 0.45) < win_h / 2) & (v > v0) & (v < top - 0.6)
        shop = (v > 0.4) & (v < v0 - 0.6) & (np.abs(fu - 0.5) < 0.38)
        band = (np.abs(fv - 0.5) > 0.46) & (v > v0)  # floor slabs
        col = c1[None] * (1 + mat.noise * n - 0.15 * band)[:, None]
        glazed = np.nonzero(win | shop)[0]
        col[glazed] = c2[None] * (0.45 + 0.9 * _hash2(iu[glazed], iv[glazed]) + 0.1 * n[glazed])[:, None]
    elif kind == "leaves":
        n2 = _sample(tex.coarse, u / 0.25, v / 0.25)
        col = c1[None] * (0.65 + 0.25 * n + 0.2 * n2)[:, None]
        col = np.where((n2 > 0.9)[:, None], col * np.asarray(c2, np.float32)[None] / max(c1.max(), 1e-3), col)
        alpha = (n * 0.6 + n2) > -2.1 if px_m < 0.02 else None
    elif kind == "glass":
        top = mat.extra[0] if mat.extra else 1.0
        w = np.clip((v - 0.0) / max(top, 1e-3), 0, 1)[:, None]
        col = c1[None] * (1 - w) + c2[None] * w + 0.03 * n[:, None]
    elif kind == "mesh":
        p, bar, top = mat.extra
        fu, fv = u / p - np.floor(u / p), v / p - np.floor(v / p)
        alpha = (fu < bar) | (fv < bar) | (v < 0.06) | (v > top - 0.06) | ((u % 2.5) < 0.06)
        col = c1[None] * (1 + mat.noise * n)[:, None]
        if px_m > p / 3:
            col, alpha = col * 0.75, None
    elif kind == "slats":
        fu = u / mat.period - np.floor(u / mat.period)
        alpha = (
            (fu < mat.extra[0])
            | (np.abs(v - mat.extra[1] * 0.3) < 0.05)
            | (np.abs(v - mat.extra[1] * 0.8) < 0.05)
        )
        col = (
            c1[None]
            * (1 + mat.noise * n)[:, None]
            * (0.9 + 0.2 * _hash2(np.floor(u / mat.period), 0 * u))[:, None]
        )
        if px_m > mat.period / 3:
            col, alpha = col * 0.8, None
    else:
        raise ValueError(f"unknown material kind {kind!r}")
    return col.astype(np.float32), alpha
