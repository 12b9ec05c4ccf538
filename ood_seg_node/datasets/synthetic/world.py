# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What one seed fixes: road layout, appearance, weather, static faces and moving actors.

Why it exists: the world is built once per seed and then only read while frames are rendered; this module
holds that record, and the state the builder's parts share while they fill it in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ood_seg_node.datasets.synthetic.geometry import _Face, _Part
from ood_seg_node.datasets.synthetic.raster import _Light
from ood_seg_node.datasets.synthetic.textures import _Textures


@dataclass
class _Vehicle:
    kind: str  # car | truck | bus
    s: float
    z0: float
    speed: float  # m/s along +Z (negative: oncoming)
    length: float
    width: float
    color: tuple[float, float, float]


@dataclass
class _Walker:
    s: float
    z0: float
    speed: float
    parts: list[_Part]


@dataclass
class _Decal:
    kind: str
    s0: float
    s1: float
    z0: float
    z1: float
    color: tuple[float, float, float] = (0.85, 0.85, 0.85)
    raster: np.ndarray | None = None  # bool mask sampled at 5 cm for arrows


@dataclass
class _World:
    """Everything fixed for one seed: road layout, appearance, weather, static faces, moving actors."""

    road: tuple[float, ...] = ()
    lane_w: float = 3.25
    half_l: float = 3.25
    half_r: float = 3.25
    s_ego: float = 1.6
    sw_l: float = 2.5
    sw_r: float = 2.5
    seg_z: list[np.ndarray] = field(default_factory=list)  # per side (0 left, 1 right): segment starts
    seg_code: list[np.ndarray] = field(default_factory=list)  # 0 road (crossing), 1 pavement, 2 terrain
    lines: list[tuple[float, float, float, float]] = field(default_factory=list)  # s, width, dash, period
    line_color: tuple[float, float, float] = (0.85, 0.85, 0.82)
    decals: list[_Decal] = field(default_factory=list)
    faces: list[_Face] = field(default_factory=list)
    shadows: list[np.ndarray] = field(default_factory=list)
    ao: list[np.ndarray] = field(default_factory=list)
    vehicles: list[_Vehicle] = field(default_factory=list)
    walkers: list[_Walker] = field(default_factory=list)
    asphalt: tuple[float, float, float] = (0.35, 0.35, 0.36)
    pave: tuple[float, float, float] = (0.6, 0.58, 0.56)
    curb: tuple[float, float, float] = (0.7, 0.7, 0.68)
    grass: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.3, 0.4, 0.15),
        (0.45, 0.42, 0.25),
    )
    tile: float = 0.3
    light: _Light = field(default_factory=lambda: _Light(np.array([0.3, 0.8, 0.5]), 0.6, 0.4))
    sky_zenith: tuple[float, float, float] = (0.3, 0.5, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.9)
    clouds: float = 0.3
    overcast: bool = False
    fog: float = 0.003
    fog_color: tuple[float, float, float] = (0.75, 0.78, 0.82)
    wet: float = 0.0
    shadow_strength: float = 0.5
    exposure: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    backdrop_h: np.ndarray = field(default_factory=lambda: np.zeros(1))
    backdrop_label: np.ndarray = field(default_factory=lambda: np.zeros(1, np.uint8))
    backdrop_color: np.ndarray = field(default_factory=lambda: np.zeros((1, 3)))
    tex: _Textures | None = None
    face_zmin: np.ndarray = field(default_factory=lambda: np.zeros(0))
    face_zmax: np.ndarray = field(default_factory=lambda: np.zeros(0))
    face_lod: np.ndarray = field(default_factory=lambda: np.zeros(0))
    shadow_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ao_z: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    def xc(self, z: np.ndarray | float) -> np.ndarray | float:
        a1, p1, f1, a2, p2, f2 = self.road
        return a1 * np.sin(2 * np.pi * z / p1 + f1) + a2 * np.sin(2 * np.pi * z / p2 + f2)

    def dxc(self, z: float) -> float:
        a1, p1, f1, a2, p2, f2 = self.road
        return float(
            a1 * 2 * math.pi / p1 * math.cos(2 * math.pi * z / p1 + f1)
            + a2 * 2 * math.pi / p2 * math.cos(2 * math.pi * z / p2 + f2)
        )

    def at(self, s: float, z: float, y: float = 0.0) -> np.ndarray:
        return np.array([float(self.xc(z)) + s, y, z])

    def yaw(self, z: float) -> float:
        return math.atan(self.dxc(z))


class _BuilderBase:
    """State the builder's parts share while they populate one `_World`.

    The parts (appearance, road, roadside, furniture, vehicles) are mixins that call each other through
    ``self``; only `_Builder` composes them all and sets these attributes.
    """

    rng: np.random.Generator  # layout stream
    look: np.random.Generator  # appearance stream
    w: _World
    z_end: float
    casters: list[np.ndarray]
    rural: bool
    park: tuple[float, float]
    lanes: tuple[int, int]
    crossings: list[tuple[float, float]]

    def _add(self, faces: list[_Face], casters: list[np.ndarray], ao: list[np.ndarray] | None = None) -> None:
        self.w.faces += faces
        self.casters += casters
        self.w.ao += ao or []

    def _in_crossing(self, z: float, margin: float) -> bool:
        return any(zc - margin <= z <= zc + cw + margin for zc, cw in self.crossings)
