# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""What lines the road: crossings, buildings, vegetation, fences, walls and hedges.

Why it exists: each side of the road is laid out as a run of segments (built-up, park, hedge, fence,
wall, crossing) that sets the ground labels there and the static faces behind the pavement.
"""

from __future__ import annotations

import math

import numpy as np

from ood_seg_node.datasets.synthetic.constants import _BUILDING, _FENCE, _UP, _VEG, _WALL
from ood_seg_node.datasets.synthetic.geometry import _blob, _box_faces, _Face, _Part, _rect
from ood_seg_node.datasets.synthetic.textures import _hsv, _jitter, _Material
from ood_seg_node.datasets.synthetic.world import _BuilderBase

_FACADE_COLORS = (
    (0.78, 0.72, 0.62),
    (0.6, 0.6, 0.6),
    (0.55, 0.33, 0.25),
    (0.88, 0.86, 0.82),
    (0.82, 0.76, 0.55),
    (0.62, 0.68, 0.72),
    (0.45, 0.45, 0.47),
    (0.72, 0.6, 0.5),
)


def _billboard_caster(origin: np.ndarray, contour: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """3-D points of a billboard contour turned broadside to the sun (for its ground shadow)."""
    us = np.array([sun[2], 0.0, -sun[0]])
    us /= max(np.linalg.norm(us), 1e-6)
    return origin[None] + contour[:, :1] * us[None] + contour[:, 1:2] * _UP[None]


class _RoadsideMixin(_BuilderBase):
    """Builder part: what lines the road: buildings, vegetation, fences, walls, crossings, furniture."""

    def _roadside(self) -> None:
        w, r = self.w, self.rng
        crossings = []
        z = r.uniform(30, 120)
        while z < self.z_end:
            if r.random() < (0.25 if self.rural else 0.6):
                crossings.append((z, r.uniform(8, 14)))
            z += r.uniform(80, 220)
        self.crossings = crossings
        kinds = ["buildings", "park", "hedge", "fence", "wall"]
        probs = np.array([0.1, 0.5, 0.15, 0.15, 0.1] if self.rural else [0.62, 0.12, 0.08, 0.1, 0.08])
        for side in (0, 1):
            sgn = 1.0 if side else -1.0
            edge = (w.half_r if side else w.half_l) + (w.sw_r if side else w.sw_l)
            starts, codes = [-100.0], [1 if not self.rural else 2]
            z = -60.0
            ci = 0
            while z < self.z_end:
                if ci < len(crossings) and z + 15 > crossings[ci][0]:
                    zc, cw = crossings[ci]
                    starts += [zc, zc + cw]
                    codes += [0, 1 if not self.rural else 2]
                    z = zc + cw
                    ci += 1
                    continue
                kind = str(r.choice(kinds, p=probs))
                seg_len = r.uniform(15, 80)
                if ci < len(crossings):
                    seg_len = min(seg_len, crossings[ci][0] - z)
                seg_len = max(seg_len, 3.0)
                starts.append(z)
                codes.append(1 if (kind == "buildings" and not self.rural) else 2)
                self._segment(kind, side, sgn, edge, z, z + seg_len)
                z += seg_len
            w.seg_z.append(np.array(starts))
            w.seg_code.append(np.array(codes))
            self._furniture(side, sgn)

    def _building(self, sgn: float, s_front: float, z0: float, z1: float, second_row: bool = False) -> None:
        r = self.rng
        z = z0
        while z < z1 - 4:
            bw = min(r.uniform(8, 26), z1 - z)
            depth = r.uniform(10, 22)
            height = r.uniform(6, 26) * (1.3 if second_row else 1.0)
            zc = z + bw / 2
            sf = s_front + (r.uniform(0, 1.5) if r.random() < 0.3 else 0.0)
            pos = self.w.at(sgn * (sf + depth / 2), zc)
            col = _jitter(r, _FACADE_COLORS[int(r.integers(len(_FACADE_COLORS)))], 0.08)
            sy = r.uniform(2.8, 3.5)
            mat = _Material(
                "facade",
                col,
                _hsv(r.uniform(0.55, 0.65), r.uniform(0.1, 0.3), r.uniform(0.15, 0.35)),
                noise=r.uniform(0.02, 0.08),
                scale=0.08,
                extra=(
                    r.uniform(0.35, 0.65),
                    r.uniform(0.4, 0.6),
                    r.uniform(2.2, 4.0),
                    sy,
                    r.uniform(3.0, 4.5),
                    height,
                ),
            )
            tpl = _Part([np.zeros((1, 2))], mat, _BUILDING)
            self._add(
                _box_faces(
                    pos,
                    self.w.yaw(zc),
                    bw,
                    depth,
                    0.0,
                    height,
                    {"back": tpl, "front": tpl, "left": tpl, "right": tpl},
                ),
                [
                    np.array(
                        [
                            pos + (a * bw / 2 * np.array([0, 0, 1.0])) + np.array([b * depth / 2, y, 0])
                            for a in (-1, 1)
                            for b in (-1, 1)
                            for y in (0.0, height)
                        ]
                    )
                ],
            )
            z += bw + (r.uniform(1, 6) if r.random() < 0.3 else 0.0)

    def _tree(self, s: float, z: float, scale: float = 1.0) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        trunk_h = r.uniform(1.8, 3.5) * scale
        crown = r.uniform(1.5, 3.8) * scale
        leaves = _Material(
            "leaves",
            _hsv(r.uniform(0.2, 0.3), r.uniform(0.45, 0.75), r.uniform(0.2, 0.4)),
            _hsv(r.uniform(0.15, 0.25), 0.5, 0.5),
            noise=0.5,
            scale=0.03,
        )
        bark = _Material(
            "plain", _hsv(0.08, r.uniform(0.2, 0.5), r.uniform(0.15, 0.35)), noise=0.2, scale=0.02
        )
        tw = r.uniform(0.12, 0.25) * scale
        trunk = _rect(-tw, 0, tw, trunk_h + crown * 0.5)
        blob = _blob(r, 0, trunk_h + crown * 0.85, crown, 22, 0.2)
        face = _Face(
            pos,
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([trunk], bark, _VEG, "cyl"), _Part([blob], leaves, _VEG, "sphere")],
            billboard=True,
        )
        sun = self.w.light.sun
        self._add([face], [_billboard_caster(pos, trunk, sun), _billboard_caster(pos, blob, sun)])

    def _bush(self, s: float, z: float) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        rad = r.uniform(0.4, 1.2)
        leaves = _Material(
            "leaves",
            _hsv(r.uniform(0.2, 0.3), r.uniform(0.5, 0.8), r.uniform(0.2, 0.38)),
            (0.3, 0.35, 0.1),
            noise=0.5,
            scale=0.03,
        )
        blob = _blob(r, 0, rad * 0.7, rad, 16, 0.25, flat_bottom=0.0)
        self._add(
            [_Face(pos, np.array([1.0, 0, 0]), _UP, [_Part([blob], leaves, _VEG, "sphere")], billboard=True)],
            [_billboard_caster(pos, blob, self.w.light.sun)],
        )

    def _along(
        self,
        sgn: float,
        s: float,
        z0: float,
        z1: float,
        height: float,
        part: _Part,
        box: float = 0.0,
        step: float = 8.0,
    ) -> None:
        """A fence (thin two-sided faces) or a wall/hedge (boxes of depth ``box``) following the curve."""
        z = z0
        while z < z1 - 0.5:
            ln = min(step, z1 - z)
            zc = z + ln / 2
            yaw = self.w.yaw(zc)
            pos = self.w.at(sgn * s, zc)
            if box > 0:
                pos = self.w.at(sgn * (s + box / 2), zc)
                faces = _box_faces(
                    pos,
                    yaw,
                    ln,
                    box,
                    0.0,
                    height,
                    {k: part for k in ("back", "front", "left", "right", "top")},
                )
            else:
                hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
                faces = [
                    _Face(
                        pos - hvec * ln / 2,
                        hvec,
                        _UP,
                        [_Part([_rect(0, 0, ln, height)], part.material, part.label)],
                    )
                ]
            corners = np.array(
                [pos + np.array([0, y, dz]) for y in (0.0, height) for dz in (-ln / 2, ln / 2)]
            )
            self._add(faces, [corners])
            z += ln

    def _segment(self, kind: str, side: int, sgn: float, edge: float, z0: float, z1: float) -> None:
        r = self.rng
        if kind == "buildings":
            self._building(sgn, edge + (r.uniform(0, 4) if r.random() < 0.4 else 0.3), z0, z1)
            return
        if kind in ("hedge", "fence", "wall"):
            h = {"hedge": r.uniform(0.8, 2.0), "fence": r.uniform(1.0, 2.2), "wall": r.uniform(0.8, 3.0)}[
                kind
            ]
            if kind == "hedge":
                part = _Part(
                    [],
                    _Material(
                        "leaves",
                        _hsv(r.uniform(0.2, 0.3), 0.6, r.uniform(0.2, 0.35)),
                        (0.25, 0.3, 0.1),
                        noise=0.5,
                        scale=0.03,
                    ),
                    _VEG,
                )
                self._along(sgn, edge + 0.4, z0, z1, h, part, box=r.uniform(0.6, 1.2))
            elif kind == "wall":
                col = _hsv(r.uniform(0.05, 0.15), r.uniform(0.0, 0.2), r.uniform(0.45, 0.75))
                part = _Part(
                    [], _Material("mix", col, _jitter(r, col, 0.1), noise=0.08, scale=0.04, period=0.1), _WALL
                )
                self._along(sgn, edge + 0.2, z0, z1, h, part, box=0.3)
            else:
                col = _hsv(r.uniform(0, 1), r.uniform(0, 0.3), r.uniform(0.25, 0.7))
                if r.random() < 0.5:
                    mat = _Material(
                        "mesh", col, noise=0.05, scale=0.02, extra=(r.uniform(0.05, 0.15), 0.15, h)
                    )
                else:
                    mat = _Material(
                        "slats",
                        _hsv(0.08, r.uniform(0.2, 0.5), r.uniform(0.35, 0.6)),
                        noise=0.1,
                        scale=0.02,
                        period=r.uniform(0.1, 0.2),
                        extra=(r.uniform(0.5, 0.9), h),
                    )
                self._along(sgn, edge + 0.2, z0, z1, h, _Part([], mat, _FENCE))
            if r.random() < 0.6:
                self._building(sgn, edge + r.uniform(4, 12), z0, z1)
            else:
                for z in np.arange(z0 + r.uniform(0, 6), z1, r.uniform(5, 10)):
                    self._tree(sgn * (edge + r.uniform(2, 8)), float(z))
            return
        # park: terrain with trees and bushes, maybe buildings far behind
        for z in np.arange(z0 + r.uniform(0, 5), z1, r.uniform(4, 10)):
            self._tree(sgn * (edge + r.uniform(1, 14)), float(z + r.uniform(-1, 1)))
        for z in np.arange(z0 + r.uniform(0, 5), z1, r.uniform(3, 9)):
            self._bush(sgn * (edge + r.uniform(0.8, 6)), float(z))
        if r.random() < 0.5:
            self._building(sgn, edge + r.uniform(15, 30), z0, z1, second_row=True)
