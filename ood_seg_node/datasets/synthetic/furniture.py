# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Street furniture and pavement life: lamps, signs, traffic lights, pedestrians and bicycles.

Why it exists: these are the thin inlier classes (pole, traffic sign, traffic light, person, bicycle)
a segmenter must learn next to the road; this builder part places them along each pavement.
"""

from __future__ import annotations

import math

import numpy as np

from ood_seg_node.datasets.synthetic.constants import _BICYCLE, _LIGHT, _PERSON, _POLE, _SIGN, _UP
from ood_seg_node.datasets.synthetic.geometry import _box_faces, _ellipse, _Face, _Part, _rect
from ood_seg_node.datasets.synthetic.textures import _hsv, _Material
from ood_seg_node.datasets.synthetic.world import _BuilderBase, _Walker


class _FurnitureMixin(_BuilderBase):
    """Builder part: street lamps, signs, traffic lights, pedestrians, bicycles and pavement trees."""

    def _person(self, rng: np.random.Generator) -> list[_Part]:
        hh = rng.uniform(1.55, 1.92)
        skin = _Material(
            "plain",
            _hsv(rng.uniform(0.04, 0.09), rng.uniform(0.3, 0.6), rng.uniform(0.3, 0.85)),
            noise=0.05,
            scale=0.01,
        )
        shirt = _Material(
            "plain", _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.1, 0.9)), noise=0.1, scale=0.01
        )
        pants = _Material(
            "plain",
            _hsv(rng.choice([0.6, 0.08, 0.0]), rng.uniform(0, 0.5), rng.uniform(0.08, 0.5)),
            noise=0.1,
            scale=0.01,
        )
        hair = _Material("plain", _hsv(0.08, 0.5, rng.uniform(0.05, 0.5)), noise=0.2, scale=0.01)
        step = rng.uniform(0.0, 0.12)
        lg = [
            np.array([[-0.17 - step, 0], [-0.04, 0], [-0.03, 0.48 * hh], [-0.16, 0.48 * hh]]),
            np.array([[0.04, 0], [0.17 + step, 0], [0.16, 0.48 * hh], [0.03, 0.48 * hh]]),
        ]
        torso = np.array([[-0.17, 0.46 * hh], [0.17, 0.46 * hh], [0.22, 0.82 * hh], [-0.22, 0.82 * hh]])
        arms = [
            np.array([[-0.3, 0.47 * hh], [-0.2, 0.47 * hh], [-0.19, 0.8 * hh], [-0.27, 0.8 * hh]]),
            np.array([[0.2, 0.47 * hh], [0.3, 0.47 * hh], [0.27, 0.8 * hh], [0.19, 0.8 * hh]]),
        ]
        head = _ellipse(0, 0.9 * hh, 0.09, 0.115, 14)
        hair_c = _ellipse(0, 0.93 * hh, 0.095, 0.085, 14)
        return (
            [_Part([c], pants, _PERSON, "cyl") for c in lg]
            + [_Part([torso], shirt, _PERSON, "cyl")]
            + [_Part([c], shirt, _PERSON, "cyl") for c in arms]
            + [_Part([head], skin, _PERSON, "sphere"), _Part([hair_c], hair, _PERSON, "sphere")]
        )

    def _bicycle(self, s: float, z: float) -> None:
        r = self.rng
        pos = self.w.at(s, z)
        yaw = self.w.yaw(z)
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        frame = _Material(
            "plain", _hsv(r.random(), r.uniform(0, 0.9), r.uniform(0.1, 0.8)), noise=0.05, scale=0.01
        )
        tyre = _Material("plain", (0.05, 0.05, 0.05), noise=0.05, scale=0.01)
        wr = 0.34
        parts = [
            _Part([_ellipse(u, wr, wr, wr, 18), _ellipse(u, wr, wr - 0.05, wr - 0.05, 18)], tyre, _BICYCLE)
            for u in (-0.52, 0.52)
        ]
        joints = {
            "rh": (-0.52, wr),
            "bb": (-0.02, 0.3),
            "st": (-0.16, 0.85),
            "ht": (0.4, 0.85),
            "fh": (0.52, wr),
        }
        for a, b in (("rh", "bb"), ("bb", "st"), ("st", "ht"), ("ht", "bb"), ("ht", "fh"), ("rh", "st")):
            pa, pb = np.array(joints[a]), np.array(joints[b])
            d = pb - pa
            nrm = np.array([-d[1], d[0]]) / np.linalg.norm(d) * 0.02
            parts.append(_Part([np.array([pa - nrm, pb - nrm, pb + nrm, pa + nrm])], frame, _BICYCLE))
        parts.append(_Part([_rect(-0.26, 0.87, -0.06, 0.92)], tyre, _BICYCLE))
        parts.append(_Part([_rect(0.36, 0.85, 0.44, 1.0), _rect(0.3, 0.98, 0.5, 1.02)], tyre, _BICYCLE))
        face = _Face(pos - hvec * 0.0, hvec, _UP, parts)
        self._add([face], [np.array([pos + hvec * u + _UP * y for u in (-0.8, 0.8) for y in (0.0, 0.9)])])

    def _pole(self, pos: np.ndarray, height: float, radius: float, mat: _Material) -> _Face:
        return _Face(
            pos,
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([_rect(-radius, 0, radius, height)], mat, _POLE, "cyl")],
            billboard=True,
        )

    def _furniture(self, side: int, sgn: float) -> None:
        w, r = self.w, self.rng
        half = w.half_r if side else w.half_l
        sw = w.sw_r if side else w.sw_l
        metal = _Material("plain", _hsv(0.6, r.uniform(0, 0.15), r.uniform(0.3, 0.6)), noise=0.05, scale=0.02)
        in_cross = self._in_crossing
        # street lamps
        z = r.uniform(0, 30)
        spacing = r.uniform(22, 40)
        lamp_h = r.uniform(6, 9)
        while z < self.z_end:
            if not in_cross(z, 2):
                pos = w.at(sgn * (half + 0.5), z)
                arm = r.uniform(1.0, 2.5)
                faces = [
                    self._pole(pos, lamp_h, 0.08, metal),
                    _Face(
                        pos + _UP * lamp_h,
                        np.array([-sgn, 0, 0]),
                        _UP,
                        [
                            _Part([_rect(0, -0.05, arm, 0.05)], metal, _POLE),
                            _Part([_rect(arm - 0.5, -0.15, arm, 0.0)], metal, _POLE),
                        ],
                    ),
                ]
                self._add(
                    faces,
                    [
                        np.array(
                            [
                                pos + _UP * y + np.array([dx, 0, 0])
                                for y in (0, lamp_h)
                                for dx in (-0.08, 0.08)
                            ]
                        )
                    ],
                    [_ellipse(pos[0], pos[2], 0.3, 0.3, 8)],
                )
            z += spacing
        # traffic signs
        for z in np.arange(r.uniform(5, 50), self.z_end, r.uniform(30, 90)):
            z = float(z)
            if in_cross(z, 2) or r.random() < 0.3:
                continue
            self._sign(w.at(sgn * (half + 0.4 + (0 if sw else 0.6)), z))
        for zc, _ in self.crossings:  # traffic lights at the near corners
            self._traffic_light(w.at(sgn * (half + 0.6), zc - 1.5))
        if sw <= 0:
            return
        # pedestrians, bicycles, trees in the pavement
        density = r.uniform(0.0, 0.12)
        for z in np.arange(-20, self.z_end + 40, 1.0):
            if r.random() < density:
                walk = r.random() < 0.6
                w.walkers.append(
                    _Walker(
                        sgn * (half + r.uniform(0.6, sw - 0.3)),
                        float(z + r.uniform(0, 1)),
                        float(r.choice([-1, 1]) * r.uniform(0.8, 1.6)) if walk else 0.0,
                        self._person(r),
                    )
                )
        for z in np.arange(0, self.z_end, 1.0):
            if r.random() < 0.01 and not in_cross(float(z), 2):
                self._bicycle(sgn * (half + sw - 0.4), float(z))
        if sw > 2.8 and r.random() < 0.4:
            for z in np.arange(r.uniform(0, 10), self.z_end, r.uniform(8, 15)):
                if not in_cross(float(z), 4):
                    self._tree(sgn * (half + 1.2), float(z), 0.8)

    def _sign(self, pos: np.ndarray) -> None:
        r = self.rng
        metal = _Material("plain", (0.55, 0.56, 0.58), noise=0.05, scale=0.02)
        ph = r.uniform(2.0, 2.6)
        size = r.uniform(0.55, 0.8)
        shape = r.choice(["circle", "triangle", "rect", "octagon", "blue"])
        white = _Material("plain", (0.9, 0.9, 0.9), noise=0.03, scale=0.01)
        red = _Material("plain", (0.75, 0.1, 0.1), noise=0.03, scale=0.01)
        blue = _Material("plain", (0.1, 0.25, 0.65), noise=0.03, scale=0.01)
        yellow = _Material("plain", (0.9, 0.75, 0.1), noise=0.03, scale=0.01)
        c = size / 2
        if shape == "circle":
            parts = [(_ellipse(0, c, c, c, 20), red), (_ellipse(0, c, 0.75 * c, 0.75 * c, 20), white)]
        elif shape == "triangle":
            tri = (
                np.array([[-c, size * 0.95], [c, size * 0.95], [0, 0.05]])
                if r.random() < 0.4
                else np.array([[-c, 0.05], [c, 0.05], [0, size * 0.95]])
            )
            parts = [(tri, red), ((tri - tri.mean(0)) * 0.65 + tri.mean(0), white)]
        elif shape == "octagon":
            parts = [
                (_ellipse(0, c, c, c, 8, math.pi / 8), red),
                (_ellipse(0, c, 0.45 * c, 0.15 * c, 8), white),
            ]
        elif shape == "blue":
            parts = [
                (_ellipse(0, c, c, c, 20), blue),
                (np.array([[-0.3 * c, 0.6 * c], [0.3 * c, 0.6 * c], [0.0, 1.5 * c]]), white),
            ]
        else:
            plate = yellow if r.random() < 0.4 else blue
            parts = [
                (_rect(-c, 0, c, size * 1.2), plate),
                (_rect(-0.25 * c, 0.3 * c, 0.25 * c, 0.9 * c), white),
            ]
        top = pos + _UP * ph
        # the front faces the ego traffic (normal -Z), the grey back is seen from the other side
        front = _Face(
            top - np.array([0, 0, 0.03]),
            np.array([-1.0, 0, 0]),
            _UP,
            [_Part([cont], m, _SIGN) for cont, m in parts],
            cull=True,
        )
        back = _Face(
            top.copy(),
            np.array([1.0, 0, 0]),
            _UP,
            [_Part([parts[0][0] * np.array([-1, 1])], metal, _SIGN)],
            cull=True,
        )
        self._add(
            [self._pole(pos, ph + size * 0.5, 0.04, metal), front, back],
            [np.array([pos + _UP * y + np.array([dx, 0, 0]) for y in (0, ph + size) for dx in (-c, c)])],
        )

    def _traffic_light(self, pos: np.ndarray) -> None:
        r = self.rng
        dark = _Material("plain", (0.08, 0.08, 0.08), noise=0.05, scale=0.02)
        ph = r.uniform(2.4, 3.2)
        lit = int(r.integers(3))
        lamp_cols = [(0.9, 0.1, 0.05), (0.95, 0.65, 0.05), (0.1, 0.85, 0.4)]
        lamps = [
            _Part(
                [_ellipse(0.15, ph + 0.75 - 0.25 * k, 0.09, 0.09, 12)],
                _Material(
                    "plain", lamp_cols[k] if k == lit else (0.15, 0.15, 0.14), noise=0.0, emissive=k == lit
                ),
                _LIGHT,
            )
            for k in range(3)
        ]
        tpl = _Part([np.zeros((1, 2))], dark, _LIGHT)
        housing = _box_faces(  # the lamps sit on the back face, which looks at oncoming ego traffic
            pos,
            0.0,
            0.25,
            0.3,
            ph,
            ph + 0.9,
            {
                "back": tpl,
                "back+": [_Part([c.copy() for c in lp.contours], lp.material, _LIGHT) for lp in lamps],
                "left": tpl,
                "right": tpl,
                "front": tpl,
                "top": tpl,
            },
        )
        mat = _Material("plain", (0.4, 0.42, 0.44), noise=0.05, scale=0.02)
        self._add(
            [self._pole(pos + np.array([0, 0, 0.2]), ph, 0.07, mat)] + housing,
            [np.array([pos + _UP * y + np.array([dx, 0, 0]) for y in (0, ph + 0.9) for dx in (-0.15, 0.15)])],
        )
