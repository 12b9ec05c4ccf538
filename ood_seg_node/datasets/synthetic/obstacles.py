# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Unknown objects: the out-of-distribution obstacles lying on the road, and patches of them.

Why it exists: the anomalies are the point of the dataset, and outlier-exposure training pastes the same
objects into other images; both draw from the one generator here.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ood_seg_node.datasets.synthetic.camera import CameraModel, _rotation
from ood_seg_node.datasets.synthetic.constants import _NEAR, _OBSTACLE, _UP
from ood_seg_node.datasets.synthetic.geometry import _blob, _box_faces, _ellipse, _Face, _Part, _rect
from ood_seg_node.datasets.synthetic.raster import _Buffers, _draw_faces, _Light
from ood_seg_node.datasets.synthetic.textures import _hsv, _jitter, _Material, _Textures

_OBSTACLE_KINDS = ("box", "cylinder", "pipe", "blob", "plate", "tyre", "bag", "ball")
_OBSTACLE_P = (0.24, 0.12, 0.08, 0.16, 0.1, 0.1, 0.12, 0.08)


def _obstacle_material(rng: np.random.Generator, asphalt: tuple[float, float, float]) -> _Material:
    """An unknown object's surface: saturated, patterned, dark/white, wooden, or deliberately road-like."""
    kind = rng.choice(
        ["solid", "stripes", "checker", "noise", "roadlike", "dark", "white", "wood"],
        p=[0.26, 0.13, 0.08, 0.1, 0.13, 0.1, 0.08, 0.12],
    )
    sat = _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    other = _hsv(rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.1, 1.0))
    gloss = float(rng.choice([0.0, 0.25]))
    if kind == "solid":
        return _Material("plain", sat, noise=rng.uniform(0.0, 0.08), scale=0.02, gloss=gloss)
    if kind == "stripes":
        return _Material(
            "stripes",
            sat,
            other,
            noise=0.04,
            scale=0.02,
            period=rng.uniform(0.04, 0.25),
            angle=rng.uniform(0, math.pi),
        )
    if kind == "checker":
        return _Material("checker", sat, other, noise=0.03, scale=0.02, period=rng.uniform(0.03, 0.12))
    if kind == "noise":
        return _Material("mix", sat, other, noise=0.15, scale=0.01, period=rng.uniform(0.005, 0.03))
    if kind == "roadlike":
        g = _jitter(rng, asphalt, 0.12)
        return _Material("mix", g, _jitter(rng, g, 0.15), noise=0.12, scale=0.015, period=0.02)
    if kind == "dark":
        return _Material(
            "plain",
            _hsv(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.05, 0.18)),
            noise=0.1,
            scale=0.02,
            gloss=gloss,
        )
    if kind == "white":
        return _Material(
            "plain",
            _hsv(rng.random(), rng.uniform(0, 0.1), rng.uniform(0.8, 1.0)),
            noise=0.05,
            scale=0.02,
            gloss=gloss,
        )
    wood = _hsv(rng.uniform(0.06, 0.11), rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.75))
    return _Material(
        "stripes",
        wood,
        _jitter(rng, wood, 0.15),
        noise=0.1,
        scale=0.01,
        period=rng.uniform(0.01, 0.05),
        angle=float(rng.choice([0.0, math.pi / 2])),
    )


def _obstacle(
    rng: np.random.Generator, pos: np.ndarray, size: float, asphalt: tuple[float, float, float]
) -> tuple[list[_Face], list[np.ndarray], list[np.ndarray]]:
    """An unknown object standing on the ground at ``pos`` (x, 0, z).

    Returns:
        faces, sun-shadow caster point sets (world 3-D), ambient-occlusion footprints (x, z polygons).
    """
    kind = rng.choice(_OBSTACLE_KINDS, p=_OBSTACLE_P)
    mat = _obstacle_material(rng, asphalt)
    yaw = rng.uniform(0, 2 * math.pi)
    hdir = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    rdir = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    x, z = float(pos[0]), float(pos[2])
    lab = _OBSTACLE
    faces: list[_Face] = []

    def flat(contours: list[np.ndarray], normal: str = "flat", m: _Material = mat) -> _Part:
        return _Part(contours, m, lab, normal)

    if kind == "box":
        length, width = size * rng.uniform(0.7, 1.6), size * rng.uniform(0.6, 1.4)
        hh = size * rng.uniform(0.3, 1.1)
        tpl = flat([np.zeros((1, 2))])
        top = (
            flat([np.zeros((1, 2))], m=mat)
            if rng.random() < 0.8
            else _Part(
                [np.zeros((1, 2))],
                _Material("plain", _jitter(rng, mat.color, 0.3), noise=0.05, scale=0.02),
                lab,
            )
        )
        faces = _box_faces(
            pos,
            yaw,
            length,
            width,
            0.0,
            hh,
            {"back": tpl, "front": tpl, "left": tpl, "right": tpl, "top": top},
            obstacle=True,
        )
        radius = 0.5 * math.hypot(length, width)
    elif kind in ("cylinder", "ball", "blob", "bag"):
        r = size * rng.uniform(0.25, 0.55)
        if kind == "cylinder":
            hh = size * rng.uniform(0.5, 1.4)
            parts = [flat([_rect(-r, 0, r, hh)], "cyl")]
            faces.append(
                _Face(
                    np.array([x, hh, z]),
                    hdir,
                    rdir,
                    [
                        flat([_ellipse(0, 0, r, r, 20)]),
                        _Part(
                            [_ellipse(0, 0, 0.85 * r, 0.85 * r, 20)],
                            _Material("plain", _jitter(rng, mat.color, 0.2), noise=0.1, scale=0.02),
                            lab,
                        ),
                    ],
                    cull=True,
                    obstacle=True,
                )
            )
        elif kind == "ball":
            hh = 2 * r
            parts = [flat([_ellipse(0, r, r, r, 24)], "sphere")]
            mat.gloss = 0.3
        elif kind == "blob":
            hh = 1.3 * r * rng.uniform(0.6, 1.2)
            parts = [flat([_blob(rng, 0, hh / 2, max(r, hh / 2), 20, 0.3, flat_bottom=0.0)], "sphere")]
        else:
            hh = 1.6 * r
            body = _blob(rng, 0, 0.75 * r, r, 18, 0.15, flat_bottom=0.0)
            ears = [
                _ellipse(-0.25 * r, 1.55 * r, 0.12 * r, 0.3 * r, 10),
                _ellipse(0.25 * r, 1.55 * r, 0.12 * r, 0.3 * r, 10),
            ]
            mat = _Material("plain", mat.color, noise=0.12, scale=0.01, gloss=0.35)
            parts = [flat([body], "sphere"), flat([ears[0]]), flat([ears[1]])]
        faces.append(_Face(np.array([x, 0.0, z]), rdir, _UP, parts, billboard=True, obstacle=True))
        radius = r
    elif kind == "pipe":
        r = size * rng.uniform(0.12, 0.3)
        length = size * rng.uniform(1.2, 3.0)
        faces.append(
            _Face(
                np.array([x, 0.0, z]),
                hdir,
                _UP,
                [flat([_rect(-length / 2, 0, length / 2, 2 * r)], "cylh")],
                obstacle=True,
            )
        )
        cap = _Material("plain", _jitter(rng, mat.color, 0.25), noise=0.05, scale=0.02)
        for sgn in (-1.0, 1.0):
            o = np.array([x, 0.0, z]) + hdir * sgn * length / 2
            au = -rdir * sgn  # outward normal cross(au, up) = sgn * hdir
            faces.append(
                _Face(o, au, _UP, [_Part([_ellipse(0, r, r, r, 16)], cap, lab)], cull=True, obstacle=True)
            )
        radius, hh = length / 2, 2 * r
    elif kind == "plate":
        n = int(rng.integers(3, 8))
        a = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = size * rng.uniform(0.3, 0.7, n)
        pts = np.stack([rad * np.cos(a), size * 0.5 + rad * np.sin(a)], 1)
        pts[:, 1] -= pts[:, 1].min()
        faces.append(_Face(np.array([x, 0.0, z]), hdir, _UP, [flat([pts])], obstacle=True))
        radius, hh = float(np.abs(pts[:, 0]).max()), float(pts[:, 1].max())
    else:  # tyre
        rr = size * rng.uniform(0.35, 0.6)
        rubber = _Material("plain", _hsv(0, 0, rng.uniform(0.06, 0.14)), noise=0.2, scale=0.008)
        rim = _Material("plain", _hsv(0, 0, rng.uniform(0.35, 0.7)), noise=0.05, scale=0.02, gloss=0.2)
        if rng.random() < 0.5:  # standing
            parts = [
                _Part([_ellipse(0, rr, rr, rr, 28), _ellipse(0, rr, 0.6 * rr, 0.6 * rr, 20)], rubber, lab)
            ]
            if rng.random() < 0.6:
                parts.append(_Part([_ellipse(0, rr, 0.6 * rr, 0.6 * rr, 20)], rim, lab))
            faces.append(_Face(np.array([x, 0.0, z]), hdir, _UP, parts, obstacle=True))
            hh = 2 * rr
        else:  # lying flat
            hh = 0.4 * rr
            faces.append(
                _Face(
                    np.array([x, 0.0, z]),
                    rdir,
                    _UP,
                    [_Part([_rect(-rr, 0, rr, hh)], rubber, lab, "cyl")],
                    billboard=True,
                    obstacle=True,
                )
            )
            faces.append(
                _Face(
                    np.array([x, hh, z]),
                    hdir,
                    rdir,
                    [
                        _Part(
                            [_ellipse(0, 0, rr, rr, 28), _ellipse(0, 0, 0.6 * rr, 0.6 * rr, 20)], rubber, lab
                        )
                    ],
                    cull=True,
                    obstacle=True,
                )
            )
        radius = rr
    casters = [
        np.array(
            [[x + dx, yy, z + dz] for dx in (-radius, radius) for dz in (-radius, radius) for yy in (0.0, hh)]
        )
    ]
    ao = [_ellipse(x, z, radius * 1.3, radius * 1.3, 12)]
    return faces, casters, ao


_PATCH_TEX: list[_Textures] = []


def make_obstacle_patch(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one procedural unknown object, as used on the synthetic road, for outlier pasting.

    The object (box, cylinder, pipe, blob, plate, tyre, bag or ball with a random surface) is seen from a
    random viewpoint, lit by a random sun, and scaled to fill most of the patch.

    Args:
        rng: random generator (the only source of randomness).
        height: patch height in pixels (>= 4).
        width: patch width in pixels (>= 4).

    Returns:
        (HxWx3 uint8 RGB, HxW bool mask of the object); pixels outside the mask are black.
    """
    if height < 4 or width < 4:
        raise ValueError(f"make_obstacle_patch: size must be at least 4x4, got {height}x{width}")
    if not _PATCH_TEX:
        _PATCH_TEX.append(_Textures.make(np.random.default_rng(20260101)))
    tex = _PATCH_TEX[0]
    grey = float(rng.uniform(0.27, 0.42))
    faces, _, _ = _obstacle(rng, np.zeros(3), 0.5, (grey, grey, grey * 1.03))
    el, az = rng.uniform(0.15, 1.2), rng.uniform(0, 2 * math.pi)
    sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
    amb, dif = rng.uniform(0.4, 0.7), rng.uniform(0.3, 0.7)
    light = _Light(sun, amb / (amb + dif * sun[1]), dif / (amb + dif * sun[1]))
    dist, cam_h = rng.uniform(2.0, 6.0), rng.uniform(0.5, 1.6)
    center = np.array([0.0, cam_h, -dist])
    # aim at the object's middle, then fit its projection into the patch
    pts = [
        f.origin + c[:, :1] * f.axis_u + c[:, 1:2] * f.axis_v
        for f in faces
        for p in f.parts
        for c in p.contours
    ]
    mid = np.concatenate(pts).mean(0)
    pitch = math.atan2(cam_h - mid[1], dist)
    rot = _rotation(0.0, pitch)
    pc = (np.concatenate(pts) - center) @ rot.T
    xy = pc[:, :2] / np.maximum(pc[:, 2:], _NEAR)
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-3) * 1.12  # billboards turn; keep a margin
    f = min(width / span[0], height / span[1])
    cam = CameraModel(
        f,
        f,
        width / 2 - f * (lo[0] + hi[0]) / 2,
        height / 2 - f * (lo[1] + hi[1]) / 2,
        cam_h,
        pitch,
        width,
        height,
    )
    buf = _Buffers(
        np.zeros((height, width, 3), np.float32),
        np.full((height, width), np.inf, np.float32),
        np.zeros((height, width), np.uint8),
        np.zeros((height, width), bool),
    )
    _draw_faces(faces, cam, center, rot, buf, tex, light)
    mask = buf.obstacle
    if not mask.any():  # degenerate draw (should not happen): fall back to a filled ellipse
        cv2.ellipse(
            mask.view(np.uint8), (width // 2, height // 2), (width // 3, height // 3), 0, 0, 360, 1, -1
        )
        buf.color[mask] = (0.6, 0.2, 0.7)
    image = np.clip(buf.color * 255 + 0.5, 0, 255).astype(np.uint8)
    image[~mask] = 0
    return image, mask.copy()
