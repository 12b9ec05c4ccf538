# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Vehicles: the faces of cars, trucks and buses, and where the builder parks and drives them.

Why it exists: parked vehicles are static faces built once, moving ones are rebuilt every frame from the
same deterministic geometry; both come from the one function here.
"""

from __future__ import annotations

import math

import numpy as np

from ood_seg_node.datasets.synthetic.constants import _BUS, _CAR, _TRUCK, _UP
from ood_seg_node.datasets.synthetic.geometry import _box_faces, _ellipse, _Face, _Part, _rect
from ood_seg_node.datasets.synthetic.textures import _jitter, _Material
from ood_seg_node.datasets.synthetic.world import _BuilderBase, _Vehicle, _World

_CAR_COLORS = (
    (0.92, 0.92, 0.92),
    (0.08, 0.08, 0.09),
    (0.6, 0.62, 0.64),
    (0.35, 0.36, 0.38),
    (0.1, 0.15, 0.35),
    (0.55, 0.08, 0.08),
    (0.12, 0.25, 0.15),
    (0.7, 0.65, 0.55),
    (0.25, 0.35, 0.55),
)


def _vehicle_faces(
    v: _Vehicle, world: _World, t: float, far: bool = False
) -> tuple[list[_Face], np.ndarray, np.ndarray]:
    """Faces, sun-caster corners and AO footprint of a vehicle at time t (deterministic: no randomness).

    ``far`` gives the level of detail for distant cars: one box with glass bands instead of body + cabin.
    """
    z = v.z0 + v.speed * t
    pos = world.at(v.s, z)
    yaw = world.yaw(z) + (math.pi if v.speed < 0 else 0.0)
    body = _Material("plain", v.color, noise=0.02, scale=0.05, gloss=0.15)
    dark = _Material("plain", (0.06, 0.06, 0.07), noise=0.1, scale=0.02)
    glass = _Material("glass", (0.05, 0.07, 0.09), (0.35, 0.4, 0.48), noise=0.0, extra=(0.5,))
    tail = _Material("plain", (0.75, 0.05, 0.05), noise=0.0, emissive=True)
    head = _Material("plain", (0.9, 0.9, 0.8), noise=0.0, emissive=True)
    plate = _Material("plain", (0.9, 0.9, 0.88), noise=0.0)
    lab = {"car": _CAR, "truck": _TRUCK, "bus": _BUS}[v.kind]
    L, W = v.length, v.width  # noqa: N806 (vehicle length and width, as in the drawings)

    def p(c: list[np.ndarray], m: _Material, normal: str = "flat") -> _Part:
        return _Part(c, m, lab, normal)

    blank = [np.zeros((1, 2))]
    faces: list[_Face] = []
    wheel_r = 0.33 if v.kind == "car" else 0.5
    wheels = [p([_ellipse(u, wheel_r, wheel_r, wheel_r, 14)], dark) for u in (0.8, L - 0.9)]
    if v.kind == "car" and far:
        y0, y1, cab_top = 0.25, 0.95, 1.45
        band = [p([_rect(0.9, y1 + 0.05, L - 1.0, cab_top - 0.05)], glass)]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            y0,
            cab_top,
            {
                "back": p(blank, body),
                "back+": [
                    p([_rect(0.2, y1 + 0.05, W - 0.2, cab_top - 0.05)], glass),
                    p([_rect(0.08, 0.7, 0.38, 0.85)], tail),
                    p([_rect(W - 0.38, 0.7, W - 0.08, 0.85)], tail),
                ],
                "front": p(blank, body),
                "front+": [p([_rect(0.2, y1 + 0.05, W - 0.2, cab_top - 0.05)], glass)],
                "left": p(blank, body),
                "left+": band + wheels,
                "right": p(blank, body),
                "right+": band + wheels,
            },
        )
        height = cab_top
    elif v.kind == "car":
        y0, y1, cab_top = 0.25, 0.95, 1.45
        rear = [
            p([_rect(0.05, 0.25, W - 0.05, 0.38)], dark),
            p([_rect(W / 2 - 0.26, 0.42, W / 2 + 0.26, 0.54)], plate),
            p([_rect(0.08, 0.7, 0.38, 0.85)], tail),
            p([_rect(W - 0.38, 0.7, W - 0.08, 0.85)], tail),
        ]
        front = [
            p([_rect(0.1, 0.65, 0.4, 0.78)], head),
            p([_rect(W - 0.4, 0.65, W - 0.1, 0.78)], head),
            p([_rect(0.55, 0.5, W - 0.55, 0.75)], dark),
        ]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            y0,
            y1,
            {
                "back": p(blank, body),
                "back+": rear,
                "front": p(blank, body),
                "front+": front,
                "left": p(blank, body),
                "left+": wheels,
                "right": p(blank, body),
                "right+": wheels,
                "top": p(blank, body),
            },
        )
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        cab_c = pos - hvec * 0.08 * L
        cab = _box_faces(
            cab_c,
            yaw,
            0.52 * L,
            0.9 * W,
            y1,
            cab_top,
            {k: p(blank, body) for k in ("back", "front", "left", "right")},
        )
        cab += _box_faces(cab_c, yaw, 0.42 * L, 0.86 * W, y1, cab_top + 0.02, {"top": p(blank, body)})
        ln, wc = 0.52 * L, 0.9 * W
        for f in cab[:2]:  # rear and front screens inside body-coloured pillars
            f.parts.append(p([_rect(0.1, y1 + 0.04, wc - 0.1, cab_top - 0.07)], glass))
            f.refresh()
        for f in cab[2:4]:  # side windows: trapezoids inside a body-coloured frame
            f.parts = [
                p([np.array([[0, y1], [ln, y1], [ln - 0.35, cab_top], [0.35, cab_top]])], body),
                p(
                    [
                        np.array(
                            [
                                [0.1, y1 + 0.04],
                                [ln - 0.1, y1 + 0.04],
                                [ln - 0.4, cab_top - 0.05],
                                [0.4, cab_top - 0.05],
                            ]
                        )
                    ],
                    glass,
                ),
            ]
            f.refresh()
        faces += cab
        height = cab_top
    elif v.kind == "truck":
        cab_l = 2.2
        hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
        cab_pos = pos + hvec * (L / 2 - cab_l / 2)
        box_pos = pos - hvec * cab_l / 2
        cargo = _Material(
            "plain",
            _jitter(np.random.default_rng(int(abs(v.z0) * 10)), (0.85, 0.85, 0.85), 0.1),
            noise=0.04,
            scale=0.1,
        )
        faces += _box_faces(
            cab_pos,
            yaw,
            cab_l,
            W,
            0.4,
            2.9,
            {
                "back": p(blank, body),
                "front": p(blank, body),
                "front+": [p([_rect(0.15, 1.6, W - 0.15, 2.5)], glass)],
                "left": p(blank, body),
                "right": p(blank, body),
                "top": p(blank, body),
            },
        )
        faces += _box_faces(
            box_pos,
            yaw,
            L - cab_l,
            W,
            0.9,
            3.6,
            {
                "back": p(blank, cargo),
                "back+": [p([_rect(W / 2 - 0.01, 0.9, W / 2 + 0.01, 3.6)], dark)],
                "front": p(blank, cargo),
                "left": p(blank, cargo),
                "left+": wheels,
                "right": p(blank, cargo),
                "right+": wheels,
                "top": p(blank, cargo),
            },
        )
        height = 3.6
    else:  # bus
        band = [p([_rect(0.8, 1.2, L - 0.5, 2.6)], glass)]
        faces += _box_faces(
            pos,
            yaw,
            L,
            W,
            0.3,
            3.1,
            {
                "back": p(blank, body),
                "back+": [
                    p([_rect(0.2, 1.5, W - 0.2, 2.6)], glass),
                    p([_rect(0.1, 0.6, 0.4, 0.9)], tail),
                    p([_rect(W - 0.4, 0.6, W - 0.1, 0.9)], tail),
                ],
                "front": p(blank, body),
                "front+": [p([_rect(0.1, 1.0, W - 0.1, 2.8)], glass)],
                "left": p(blank, body),
                "left+": band + wheels,
                "right": p(blank, body),
                "right+": band + wheels,
                "top": p(blank, body),
            },
        )
        height = 3.1
    hvec = np.array([math.sin(yaw), 0.0, math.cos(yaw)])
    rvec = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    corners = np.array(
        [
            pos + hvec * a * L / 2 + rvec * b * W / 2 + _UP * y
            for a in (-1, 1)
            for b in (-1, 1)
            for y in (0.3, height)
        ]
    )
    foot = np.array(
        [
            [
                pos[0] + hvec[0] * a * (L / 2 + 0.2) + rvec[0] * b * (W / 2 + 0.2),
                pos[2] + hvec[2] * a * (L / 2 + 0.2) + rvec[2] * b * (W / 2 + 0.2),
            ]
            for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
    )
    return faces, corners, foot


class _TrafficMixin(_BuilderBase):
    """Builder part: parked cars along the parking strips and moving traffic in the other lanes."""

    def _traffic(self) -> None:
        w, r = self.w, self.rng
        color = self._car_color
        park_l, park_r = self.park
        for sgn, park in ((-1.0, park_l), (1.0, park_r)):
            if not park:
                continue
            half = w.half_r if sgn > 0 else w.half_l
            z = r.uniform(-20, 10)
            occupancy = r.uniform(0.2, 0.9)
            while z < self.z_end:
                length = r.uniform(3.9, 4.9)
                if r.random() < occupancy and not self._in_crossing(z, 6):
                    kind = "car" if r.random() > 0.06 else "truck"
                    ln = length if kind == "car" else r.uniform(7, 9)
                    v = _Vehicle(
                        kind,
                        sgn * (half - park / 2),
                        z + ln / 2,
                        0.0,
                        ln,
                        1.8 if kind == "car" else 2.45,
                        color(r),
                    )
                    faces, corners, foot = _vehicle_faces(v, w, 0.0)
                    if kind == "car":
                        far_faces = _vehicle_faces(v, w, 0.0, far=True)[0]
                        for f in faces:
                            f.lod = 1
                        for f in far_faces:
                            f.lod = 2
                        faces += far_faces
                    self._add(faces, [corners], [foot])
                    z += ln
                z += r.uniform(0.8, 6.0)
        n_left, n_right = self.lanes
        ego_k = int(round(w.s_ego / w.lane_w - 0.5))
        for k in range(-n_left, n_right):
            if k == ego_k:
                continue
            s = (k + 0.5) * w.lane_w
            speed = r.uniform(6, 14) * (1 if k >= 0 else -1)
            density = r.uniform(0.0, 1.0)
            z = self.z_end * -0.5 - 200
            while z < self.z_end * 2.5 + 300:
                z += r.uniform(12, 90) / max(density, 0.1)
                kind = str(r.choice(["car", "truck", "bus"], p=[0.9, 0.06, 0.04]))
                ln = {"car": r.uniform(3.9, 4.9), "truck": r.uniform(7, 10), "bus": 12.0}[kind]
                w.vehicles.append(
                    _Vehicle(
                        kind, s + r.uniform(-0.2, 0.2), z, speed, ln, 1.8 if kind == "car" else 2.5, color(r)
                    )
                )
                z += ln

    @staticmethod
    def _car_color(r: np.random.Generator) -> tuple[float, float, float]:
        return _jitter(r, _CAR_COLORS[int(r.integers(len(_CAR_COLORS)))], 0.06)
