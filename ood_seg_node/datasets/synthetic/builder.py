# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The world builder: composes its parts and runs them in a fixed order for one seed.

Why it exists: the order of the random draws defines the world, so one place fixes the random streams
(layout, look, obstacles, textures), the order of the parts and the finishing spatial indices.
"""

from __future__ import annotations

import math

import numpy as np

from ood_seg_node.datasets.synthetic.appearance import _AppearanceMixin
from ood_seg_node.datasets.synthetic.furniture import _FurnitureMixin
from ood_seg_node.datasets.synthetic.obstacles import _obstacle
from ood_seg_node.datasets.synthetic.raster import _ground_hull
from ood_seg_node.datasets.synthetic.road import _RoadMixin
from ood_seg_node.datasets.synthetic.roadside import _RoadsideMixin
from ood_seg_node.datasets.synthetic.textures import _Textures
from ood_seg_node.datasets.synthetic.vehicles import _TrafficMixin
from ood_seg_node.datasets.synthetic.world import _World


class _Builder(_AppearanceMixin, _RoadMixin, _RoadsideMixin, _FurnitureMixin, _TrafficMixin):
    """Populates a `_World` from independent random streams (layout, look, obstacles)."""

    def __init__(self, seed: int, z_end: float, obstacles: bool) -> None:
        layout, look, obst, tex = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        self.rng = layout
        self.look = look
        self.w = _World()
        self.z_end = z_end
        self.casters: list[np.ndarray] = []
        self._appearance()
        self.w.tex = _Textures.make(tex, int(look.integers(5, 60)))
        self._road()
        self._roadside()
        self._traffic()
        self._decals()
        self._backdrop()
        if obstacles:
            self._obstacles(obst)
        self._finish()

    def _obstacles(self, r: np.random.Generator) -> None:
        w = self.w
        z = r.uniform(12, 35)
        first = True
        while z < self.z_end - 5:
            if r.random() < 0.07 and not first:
                z += r.uniform(40, 100)  # long empty stretch: some frames show no obstacle at all
                continue
            first = False
            for _ in range(int(r.choice([1, 1, 1, 2, 2, 3]))):
                size = float(np.clip(r.lognormal(math.log(0.25), 0.55), 0.06, 1.1))
                reach = max(w.lane_w / 2 - 0.6 * size - 0.1, 0.05)
                s = w.s_ego + r.uniform(-reach, reach)
                zz = z + r.uniform(-3, 3)
                faces, casters, ao = _obstacle(r, w.at(s, zz), size, w.asphalt)
                self._add(faces, casters, ao)
            z += r.uniform(12, 55)

    def _finish(self) -> None:
        w = self.w
        w.face_zmin = np.array([f.zmin for f in w.faces])
        w.face_zmax = np.array([f.zmax for f in w.faces])
        w.face_lod = np.array([f.lod for f in w.faces])
        if w.shadow_strength > 0:
            w.shadows = [_ground_hull(c, w.light.sun) for c in self.casters]
        w.shadow_z = np.array([[p[:, 1].min(), p[:, 1].max()] for p in w.shadows]).reshape(-1, 2)
        w.ao_z = np.array([[p[:, 1].min(), p[:, 1].max()] for p in w.ao]).reshape(-1, 2)
