# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The world's building blocks: labelled parts, planar faces and the outlines and boxes made of them.

Why it exists: everything above the ground (buildings, furniture, vehicles, people, obstacles) is a list
of planar faces in world coordinates; this module defines them and the shapes used to build them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ood_seg_node.datasets.synthetic.constants import _UP
from ood_seg_node.datasets.synthetic.textures import _Material


@dataclass
class _Part:
    """A region of a face: contours in face (u, v) metres, filled even-odd (so rings have holes)."""

    contours: list[np.ndarray]
    material: _Material
    label: int
    normal: str = "flat"  # flat | cyl (vertical axis) | cylh (horizontal axis) | sphere

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre and half extent of the part in (u, v), for the curved-normal stand-ins."""
        cached = self.__dict__.get("_bounds")
        if cached is None:
            cont = np.concatenate(self.contours)
            lo, hi = cont.min(0), cont.max(0)
            cached = self.__dict__["_bounds"] = ((lo + hi) / 2, np.maximum((hi - lo) / 2, 1e-6))
        return cached



@dataclass
class _Face:
    """A planar polygon group in world coordinates; u along ``axis_u``, v along ``axis_v``."""

    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    parts: list[_Part]
    billboard: bool = False  # turns about the vertical axis to face the camera
    cull: bool = False  # one-sided: seen only from the side of cross(axis_u, axis_v)
    obstacle: bool = False
    lod: int = 0  # 0 always drawn, 1 only near the camera, 2 only far from it
    zmin: float = field(default=0.0, init=False)
    zmax: float = field(default=0.0, init=False)
    points: np.ndarray = field(init=False, repr=False)
    splits: np.ndarray = field(init=False, repr=False)
    owner: list[int] = field(init=False, repr=False)
    normal: np.ndarray = field(init=False, repr=False)
    world: np.ndarray = field(init=False, repr=False)
    flat_ok: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Recompute cached geometry after parts or axes changed."""
        conts = [c for p in self.parts for c in p.contours]
        self.points = np.concatenate(conts).astype(np.float64)
        self.splits = np.cumsum([len(c) for c in conts])[:-1]
        self.owner = [k for k, p in enumerate(self.parts) for _ in p.contours]  # part index of each contour
        self.normal = np.cross(self.axis_u, self.axis_v)
        self.flat_ok = all(
            p.material.kind in ("plain", "glass", "mix", "leaves", "facade") for p in self.parts
        )
        self.world = (
            self.origin[None]
            + self.points[:, :1] * self.axis_u[None]
            + self.points[:, 1:] * self.axis_v[None]
        )
        span = np.abs(self.points[:, 0]).max() if self.billboard else 0.0
        self.zmin = float(self.world[:, 2].min() - span)
        self.zmax = float(self.world[:, 2].max() + span)


def _rect(u0: float, v0: float, u1: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 20, a0: float = 0.0) -> np.ndarray:
    a = a0 + np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([cu + ru * np.cos(a), cv + rv * np.sin(a)], 1)


def _blob(
    rng: np.random.Generator,
    cu: float,
    cv: float,
    r: float,
    n: int = 18,
    rough: float = 0.25,
    flat_bottom: float | None = None,
) -> np.ndarray:
    a = np.linspace(0, 2 * math.pi, n, endpoint=False)
    rad = r * (1 + rough * np.convolve(np.tile(rng.normal(0, 1, n), 3), np.ones(3) / 3, "same")[n : 2 * n])
    pts = np.stack([cu + rad * np.cos(a), cv + 0.85 * rad * np.sin(a)], 1)
    if flat_bottom is not None:
        pts[:, 1] = np.maximum(pts[:, 1], flat_bottom)
    return pts


def _box_faces(
    center: np.ndarray,
    yaw: float,
    length: float,
    width: float,
    y0: float,
    y1: float,
    mats: dict[str, _Part | list[_Part]],
    *,
    obstacle: bool = False,
) -> list[_Face]:
    """Faces of an upright box (back/front/left/right/top).

    ``mats`` maps a face name to a template part whose contours are replaced by the face rectangle (a
    missing name omits the face); extra parts drawn on top of it may follow under the name plus '+'.
    """
    h = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    r = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    c = np.array([center[0], 0.0, center[2]])
    specs = {
        "back": (c - h * length / 2 + r * width / 2, -r, _UP, width, y0, y1),
        "front": (c + h * length / 2 - r * width / 2, r, _UP, width, y0, y1),
        "right": (c + h * length / 2 + r * width / 2, -h, _UP, length, y0, y1),
        "left": (c - h * length / 2 - r * width / 2, h, _UP, length, y0, y1),
        "top": (c - h * length / 2 - r * width / 2 + _UP * y1, h, r, length, 0.0, width),
    }
    faces = []
    for name, (o, au, av, ulen, va, vb) in specs.items():
        tpl = mats.get(name)
        if not isinstance(tpl, _Part):
            continue
        extra = mats.get(name + "+", [])
        parts = [_Part([_rect(0, va, ulen, vb)], tpl.material, tpl.label, tpl.normal)]
        parts += extra if isinstance(extra, list) else [extra]
        faces.append(_Face(o, au, av, parts, cull=True, obstacle=obstacle))
    return faces
