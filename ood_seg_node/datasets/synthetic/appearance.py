# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""How a world looks: sun, sky, weather, exposure, surface colours and the distant skyline.

Why it exists: appearance draws from its own random stream, independent of the layout, so this part of the
builder is kept apart from the geometry.
"""

from __future__ import annotations

import math

import numpy as np

from ood_seg_node.datasets.synthetic.constants import _BUILDING, _VEG
from ood_seg_node.datasets.synthetic.raster import _Light
from ood_seg_node.datasets.synthetic.textures import _hsv, _rgb
from ood_seg_node.datasets.synthetic.world import _BuilderBase


class _AppearanceMixin(_BuilderBase):
    """Builder part: appearance and weather, and the distant skyline."""

    def _appearance(self) -> None:
        w, r = self.w, self.look
        w.overcast = bool(r.random() < 0.35)
        if w.overcast:
            sun = np.array([0.2, 0.95, 0.2])
            amb, dif = 0.9, 0.1
            w.sky_zenith = _hsv(0.6, r.uniform(0.0, 0.1), r.uniform(0.6, 0.8))
            w.sky_horizon = _hsv(0.6, r.uniform(0.0, 0.06), r.uniform(0.75, 0.92))
            w.clouds = r.uniform(0.5, 1.0)
        else:
            el, az = math.radians(r.uniform(15, 65)), r.uniform(0, 2 * math.pi)
            sun = np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
            amb, dif = r.uniform(0.45, 0.6), r.uniform(0.5, 0.7)
            w.sky_zenith = _hsv(r.uniform(0.56, 0.62), r.uniform(0.4, 0.7), r.uniform(0.7, 0.95))
            w.sky_horizon = _hsv(r.uniform(0.55, 0.6), r.uniform(0.1, 0.25), r.uniform(0.85, 0.98))
            w.clouds = r.uniform(0.0, 0.6)
        sun /= np.linalg.norm(sun)
        norm = amb + dif * sun[1]  # a horizontal surface in the sun shows its base colour
        w.light = _Light(sun, amb / norm, dif / norm)
        w.shadow_strength = 0.0 if w.overcast else 1.0
        if r.random() < 0.2:
            w.fog = r.uniform(0.008, 0.02)
            w.sky_zenith = _rgb(0.4 * np.array(w.sky_zenith) + 0.6 * np.array(w.sky_horizon))
        else:
            w.fog = r.uniform(0.0015, 0.005)
        w.fog_color = _rgb(np.array(w.sky_horizon) * r.uniform(0.9, 1.0))
        w.wet = float(r.uniform(0.4, 1.0)) if r.random() < 0.25 else 0.0
        w.exposure = r.uniform(0.8, 1.15)
        w.white_balance = _rgb(1 + r.normal(0, 0.03, 3))
        g = r.uniform(0.27, 0.42)
        w.asphalt = _hsv(
            r.uniform(0.55, 0.7) if r.random() < 0.6 else r.uniform(0.05, 0.12), r.uniform(0, 0.08), g
        )
        w.pave = _hsv(r.uniform(0.0, 0.12), r.uniform(0.0, 0.25), r.uniform(0.5, 0.72))
        w.curb = _hsv(0.1, r.uniform(0, 0.05), r.uniform(0.62, 0.8))
        w.grass = (
            _hsv(r.uniform(0.2, 0.27), r.uniform(0.45, 0.65), r.uniform(0.3, 0.45)),
            _hsv(r.uniform(0.11, 0.16), r.uniform(0.3, 0.5), r.uniform(0.35, 0.5)),
        )
        w.tile = float(r.choice([0.2, 0.3, 0.4, 0.6]))
        w.line_color = (0.88, 0.88, 0.85) if r.random() < 0.85 else (0.9, 0.75, 0.2)

    def _backdrop(self) -> None:
        w, r = self.w, self.look
        nb = 2048
        h = np.zeros(nb)
        lab = np.full(nb, _VEG, np.uint8)
        col = np.zeros((nb, 3))
        i = 0
        while i < nb:
            run = min(int(r.integers(8, 60)), nb - i)
            if r.random() < (0.3 if self.rural else 0.65):
                h[i : i + run] = r.uniform(0.008, 0.05)
                lab[i : i + run] = _BUILDING
                col[i : i + run] = _hsv(r.uniform(0.05, 0.6), r.uniform(0, 0.15), r.uniform(0.45, 0.7))
            else:
                h[i : i + run] = r.uniform(0.004, 0.025) * (
                    1 + 0.3 * np.sin(np.arange(run) * r.uniform(0.2, 0.6))
                )
                col[i : i + run] = _hsv(r.uniform(0.2, 0.3), r.uniform(0.3, 0.5), r.uniform(0.25, 0.4))
            i += run
        w.backdrop_h, w.backdrop_label, w.backdrop_color = h, lab, col
