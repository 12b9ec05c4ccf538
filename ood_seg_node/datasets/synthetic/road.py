# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The road itself: curvature, lanes, parking strips, lane lines and road-surface decals.

Why it exists: the road is drawn analytically per ground pixel, not as faces; this builder part fixes the
numbers the renderer evaluates (centre line, lane widths, lines, zebras, arrows, manholes, patches).
"""

from __future__ import annotations

import cv2
import numpy as np

from ood_seg_node.datasets.synthetic.textures import _hsv, _jitter
from ood_seg_node.datasets.synthetic.world import _BuilderBase, _Decal


class _RoadMixin(_BuilderBase):
    """Builder part: road geometry and markings, and road-surface decals (all inlier road)."""

    def _road(self) -> None:
        w, r = self.w, self.rng
        w.road = (
            r.uniform(0, 14),
            r.uniform(300, 800),
            r.uniform(0, 6.3),
            r.uniform(0, 3),
            r.uniform(100, 250),
            r.uniform(0, 6.3),
        )
        n_lanes = int(r.choice([2, 3, 4], p=[0.5, 0.2, 0.3]))
        n_left = n_lanes // 2
        n_right = n_lanes - n_left
        lw = r.uniform(2.9, 3.6)
        park_l = 2.2 if r.random() < 0.35 else 0.0
        park_r = 2.2 if r.random() < 0.55 else 0.0
        w.lane_w = lw
        w.half_l = n_left * lw + park_l
        w.half_r = n_right * lw + park_r
        ego_lane = n_right - 1 if n_right == 1 or r.random() < 0.6 else n_right - 2
        w.s_ego = (ego_lane + 0.5) * lw
        rural = r.random() < 0.15
        w.sw_l = 0.0 if rural else r.uniform(1.8, 4.5)
        w.sw_r = 0.0 if rural else r.uniform(1.8, 4.5)
        self.rural = rural
        self.park = (park_l, park_r)
        self.lanes = (n_left, n_right)
        dash, period = (3.0, 9.0) if r.random() < 0.6 else (6.0, 18.0)
        lines = []
        if n_lanes == 2 and r.random() < 0.6:
            lines.append((0.0, 0.12, dash, period))
        elif r.random() < 0.5:
            lines += [(-0.1, 0.1, 1e9, 1e9), (0.1, 0.1, 1e9, 1e9)]
        else:
            lines.append((0.0, 0.15, 1e9, 1e9))
        for k in range(1, n_right):
            lines.append((k * lw, 0.12, dash, period))
        for k in range(1, n_left):
            lines.append((-k * lw, 0.12, dash, period))
        if r.random() < 0.75:
            lines.append((n_right * lw - 0.15 + (0.3 if park_r else 0.0), 0.15, 1e9, 1e9))
            lines.append((-n_left * lw + 0.15 - (0.3 if park_l else 0.0), 0.15, 1e9, 1e9))
        w.lines = lines

    def _decals(self) -> None:
        w, r = self.w, self.rng
        park_l, park_r = self.park
        lo, hi = -w.half_l + park_l, w.half_r - park_r
        for zc, _ in self.crossings:
            if r.random() < 0.8:
                w.decals.append(_Decal("zebra", lo, hi, zc - 5.5, zc - 1.5, w.line_color))
            w.decals.append(_Decal("solid", 0.1, hi, zc - 7.2, zc - 6.8, w.line_color))
        arrows = [self._arrow_raster(kind) for kind in ("straight", "left", "right")]
        for z in np.arange(r.uniform(20, 60), self.z_end, r.uniform(40, 120)):
            k = int(r.integers(0, 3))
            for lane in range(self.lanes[1]):
                s = (lane + 0.5) * w.lane_w
                w.decals.append(
                    _Decal("raster", s - 0.5, s + 0.5, float(z), float(z) + 5.0, w.line_color, arrows[k])
                )
        step = r.uniform(12, 40)
        for z in np.arange(r.uniform(0, 20), self.z_end, step):
            s = r.uniform(lo + 0.6, hi - 0.6)
            rad = r.uniform(0.28, 0.4)
            w.decals.append(
                _Decal(
                    "manhole",
                    s - rad,
                    s + rad,
                    float(z) - rad,
                    float(z) + rad,
                    _hsv(0.08, 0.1, r.uniform(0.15, 0.35)),
                )
            )
        for z in np.arange(r.uniform(0, 30), self.z_end, r.uniform(15, 60)):
            shade = r.uniform(0.7, 1.2)
            ws, ls = r.uniform(0.5, 3.5), r.uniform(1.0, 8.0)
            s = r.uniform(lo, hi - ws)
            w.decals.append(
                _Decal(
                    "patch",
                    s,
                    s + ws,
                    float(z),
                    float(z) + ls,
                    tuple(float(c) * shade for c in w.asphalt),
                )
            )
        for z in np.arange(r.uniform(0, 20), self.z_end, r.uniform(8, 40)):
            rad = r.uniform(0.2, 0.9)
            s = r.uniform(lo, hi)
            w.decals.append(
                _Decal(
                    "stain",
                    s - rad,
                    s + rad,
                    float(z) - rad * 1.5,
                    float(z) + rad * 1.5,
                    _jitter(r, tuple(np.array(w.asphalt) * 0.55), 0.1),
                )
            )
        for sgn, edge in ((-1.0, w.half_l), (1.0, w.half_r)):
            for z in np.arange(r.uniform(0, 20), self.z_end, r.uniform(20, 50)):
                s = sgn * (edge - 0.35)
                w.decals.append(
                    _Decal("grate", s - 0.25, s + 0.25, float(z), float(z) + 0.6, (0.12, 0.12, 0.12))
                )

    @staticmethod
    def _arrow_raster(kind: str) -> np.ndarray:
        img = np.zeros((100, 20), np.uint8)  # 5 m long (rows along z), 1 m wide, 5 cm per cell
        shaft = np.array([[8, 0], [12, 0], [12, 70], [8, 70]])
        head = np.array([[2, 66], [18, 66], [10, 99]])
        cv2.fillPoly(img, [shaft], 1)
        if kind == "straight":
            cv2.fillPoly(img, [head], 1)
        else:
            sgn = -1 if kind == "left" else 1
            cv2.fillPoly(img, [np.array([[10, 55], [10 + sgn * 9, 70], [10 + sgn * 9, 62], [10, 48]])], 1)
            cv2.fillPoly(img, [np.array([[10, 70], [10 + sgn * 9, 78], [10 + sgn * 4, 62]])], 1)
        return img.astype(bool)
