# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Frame rendering: sky, ground, faces, moving actors, shadows, atmosphere and sensor effects.

Why it exists: a world is fixed per seed, a frame is a camera pose and a time; this module turns the two
into an image with its semantic and OOD ground truth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ood_seg_node.cityscapes import OOD_ANOMALY, OOD_IGNORE, OOD_INLIER
from ood_seg_node.datasets.synthetic.camera import CameraModel, _rotation
from ood_seg_node.datasets.synthetic.constants import (
    _FAR_GROUND,
    _NEAR,
    _OBSTACLE,
    _ROAD,
    _SIDEWALK,
    _SKY,
    _TERRAIN,
    _TEX,
    _UP,
    _VIEW_AHEAD,
)
from ood_seg_node.datasets.synthetic.geometry import _ellipse, _Face
from ood_seg_node.datasets.synthetic.raster import _Buffers, _draw_faces, _fill_ground_polys, _ground_hull
from ood_seg_node.datasets.synthetic.textures import _sample
from ood_seg_node.datasets.synthetic.vehicles import _vehicle_faces
from ood_seg_node.datasets.synthetic.world import _World


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Renderer:
    """Draws one frame of a `_World` through a `CameraModel`."""

    def __init__(self, world: _World, cam: CameraModel) -> None:
        self.w = world
        self.cam = cam
        self.dx = ((np.arange(cam.width) - cam.cx) / cam.fx).astype(np.float32)
        self.dy = ((np.arange(cam.height) - cam.cy) / cam.fy).astype(np.float32)
        yy, xx = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float32)
        rr = ((xx - cam.cx) / cam.width) ** 2 + ((yy - cam.cy) / cam.width) ** 2
        self.vignette = (1.0 - 0.35 * rr).astype(np.float32)[..., None]
        self.px_scale = cam.width / 512.0
        self.lod_distance = 40.0 * max(1.0, self.px_scale)  # far cars: one box instead of body + cabin
        self.actor_distance = min(
            150.0 * max(1.0, self.px_scale), _VIEW_AHEAD - 40
        )  # moving ones: ~7 px wide
        # sensor noise: one bank per renderer, a random crop per frame (drawing fresh normals is slow)
        bank_rng = np.random.default_rng(cam.width * 7919 + cam.height)
        self.noise = bank_rng.standard_normal((cam.height + 32, cam.width + 32, 3), dtype=np.float32) * 1.8
        self.noise += bank_rng.standard_normal((cam.height + 32, cam.width + 32, 1), dtype=np.float32) * 3.0
        self.fog_image: np.ndarray | None = None
        self.gain = self.vignette
        self.actor_faces: list[_Face] = []
        self.actor_shadow: list[np.ndarray] = []
        self.actor_ao: list[np.ndarray] = []

    def render(
        self, center: np.ndarray, yaw: float, t_sec: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image, semantic labels, anomaly ground truth, camera depth in metres, inf on the sky)."""
        w, cam = self.w, self.cam
        assert w.tex is not None
        rot = _rotation(yaw, cam.pitch_rad)
        hh, ww = cam.height, cam.width
        buf = _Buffers(
            np.empty((hh, ww, 3), np.float32),
            np.full((hh, ww), np.inf, np.float32),
            np.full((hh, ww), _SKY, np.uint8),
            np.zeros((hh, ww), bool),
        )
        wy = (rot[1, 1] * self.dy + rot[2, 1]).astype(np.float32)  # world up-component of each row's rays
        r0 = min(int(np.searchsorted(-wy, cam.height_m / _FAR_GROUND)), hh)  # first ground row
        self._prepare_actors(center[2], t_sec)
        if r0 > 0:
            self._sky(buf, yaw, r0)
        if r0 < hh:
            wx = rot[0, 0] * self.dx[None] + (rot[1, 0] * self.dy[r0:] + rot[2, 0])[:, None]
            wz = rot[0, 2] * self.dx[None] + (rot[1, 2] * self.dy[r0:] + rot[2, 2])[:, None]
            self._ground(buf, center, rot, r0, wx, wy[r0:], wz)
        near = w.face_zmin < center[2] + self.lod_distance
        sel = np.nonzero(
            (w.face_zmax > center[2] - 3)
            & (w.face_zmin < center[2] + _VIEW_AHEAD)
            & ((w.face_lod == 0) | ((w.face_lod == 1) & near) | ((w.face_lod == 2) & ~near))
        )[0]
        faces = [w.faces[i] for i in sel] + self.actor_faces
        _draw_faces(faces, cam, center, rot, buf, w.tex, w.light)
        return self._finish(buf, rng)

    # -- sky and distant backdrop
    def _sky(self, buf: _Buffers, yaw: float, r0: int) -> None:
        """Sky gradient, sun glow, clouds and skyline; separable in elevation (rows) and azimuth (columns)."""
        w, cam = self.w, self.cam
        tex = w.tex
        assert tex is not None
        el = (cam.pitch_rad - np.arctan(self.dy[:r0]))[:, None]  # no roll: elevation depends on the row
        az = (yaw + np.arctan(self.dx))[None, :]
        k = _smooth(el / 0.45) ** 0.7
        col = (
            np.asarray(w.sky_horizon, np.float32) * (1 - k[..., None])
            + np.asarray(w.sky_zenith, np.float32) * k[..., None]
        )
        col = np.broadcast_to(col, (r0, cam.width, 3)).copy()
        sun = w.light.sun
        if not w.overcast:
            sun_el, sun_az = math.asin(sun[1]), math.atan2(sun[0], sun[2])
            cosang = np.cos(el) * math.cos(sun_el) * np.cos(az - sun_az) + np.sin(el) * math.sin(sun_el)
            col += (0.4 * np.exp((cosang - 1) * 60) + 0.12 * np.exp((cosang - 1) * 5))[..., None].astype(
                np.float32
            )
        elc = np.maximum(el, 0.0)
        azb = np.broadcast_to(az, (r0, cam.width))
        elb = np.broadcast_to(elc, (r0, cam.width))
        n = _sample(tex.coarse, azb * (_TEX * 2 / (2 * math.pi)), 8.0 / (elb + 0.05)) + 0.25 * _sample(
            tex.band, azb * (_TEX * 4 / (2 * math.pi)), 20.0 / (elb + 0.05)
        )
        cover = _smooth((n - (1.6 - 3.0 * w.clouds)) * 0.5) * _smooth(elc / 0.03)
        cloud = np.asarray((0.95, 0.95, 0.96) if not w.overcast else (0.78, 0.78, 0.8), np.float32)
        cloud_col = cloud * (0.88 + 0.12 * np.clip(n - 1.0, -1, 1) + 0.1 * _smooth(elc / 0.3))[..., None]
        col += (cloud_col - col) * cover[..., None]
        nb = w.backdrop_h.size
        bins = ((az[0] + math.pi) / (2 * math.pi) * nb).astype(np.int64) % nb
        back = el < w.backdrop_h[bins][None, :]
        if back.any():
            by, bx = np.nonzero(back)
            shade = 0.85 + 0.15 * np.clip(_sample(tex.band, bx * 0.7 + yaw * 900, by * 0.7), -1, 1)
            col[by, bx] = w.backdrop_color[bins[bx]] * shade[:, None]
            buf.label[by, bx] = w.backdrop_label[bins[bx]]
            buf.depth[by, bx] = _FAR_GROUND
        buf.color[:r0] = col

    # -- the ground plane: road, pavement, terrain, markings, decals, shadows
    def _ground(
        self,
        buf: _Buffers,
        center: np.ndarray,
        rot: np.ndarray,
        r0: int,
        wx: np.ndarray,
        wy: np.ndarray,
        wz: np.ndarray,
    ) -> None:
        w, cam = self.w, self.cam
        tex = w.tex
        assert tex is not None
        t = (cam.height_m / -wy).astype(np.float32)  # camera depth of each ground row
        tc = t[:, None]
        big_x = (center[0] + tc * wx).astype(np.float32)
        big_z = (center[2] + tc * wz).astype(np.float32)
        # road centre: exact per row at the image centre, second-order Taylor across the row
        zm = big_z[:, cam.width // 2 : cam.width // 2 + 1]
        c0 = w.xc(zm)
        c1 = np.array([w.dxc(float(z)) for z in zm[:, 0]], np.float32)[:, None]
        c2 = (np.array([w.dxc(float(z) + 0.5) for z in zm[:, 0]], np.float32)[:, None] - c1) / 0.5
        dz = big_z - zm
        s = big_x - (c0 + dz * (c1 + 0.5 * c2 * dz)).astype(np.float32)
        foot = (t / cam.fx * np.sqrt(np.maximum(t / cam.height_m, 1.0)))[:, None]  # metres per pixel (along)
        foot_lat = (t / cam.fx)[:, None]
        # labels
        right = s >= 0
        a = np.abs(s)
        half = np.where(right, np.float32(w.half_r), np.float32(w.half_l))
        sw = np.where(right, np.float32(w.sw_r), np.float32(w.sw_l))
        code = np.where(
            right,
            w.seg_code[1][np.searchsorted(w.seg_z[1], big_z, "right") - 1],
            w.seg_code[0][np.searchsorted(w.seg_z[0], big_z, "right") - 1],
        )
        on_road = a < half
        on_walk = (a < half + sw) & (code != 0)
        lbl = np.where(
            on_road,
            np.uint8(_ROAD),
            np.where(on_walk, np.uint8(_SIDEWALK), np.array([_ROAD, _SIDEWALK, _TERRAIN], np.uint8)[code]),
        )
        # multi-octave noise, each octave faded out where a pixel covers a whole wavelength (no aliasing)
        noise = np.zeros_like(s)
        for k, sc in enumerate((0.0125, 0.05, 0.2)):
            wgt = np.clip(2.0 - foot[:, 0] / (2 * sc), 0, 1)
            ra = int(np.argmax(wgt > 0)) if wgt[-1] > 0 else len(wgt)
            if ra < len(wgt):
                noise[ra:] += wgt[ra:, None] * _sample(
                    tex.band, s[ra:] / sc + 17 * k, big_z[ra:] / sc + 31 * k
                )
        coarse = _sample(tex.coarse, s / 0.15, big_z / 0.15)
        coarse2 = _sample(tex.coarse, big_z / 0.11 + 50, s / 0.11 + 90)
        f_road = (1 + 0.05 * noise + 0.05 * coarse) * (1 - 0.12 * _smooth((coarse2 - 1.0) * 3))
        cw = np.clip(2.0 - foot[:, 0] / 0.06, 0, 1)
        ra = int(np.argmax(cw > 0)) if cw[-1] > 0 else len(cw)
        if ra < len(cw):
            f_road[ra:] *= 1 - 0.35 * cw[ra:, None] * _sample(tex.cracks, s[ra:] / 0.03, big_z[ra:] / 0.03)
        sl = np.mod(s - w.s_ego + w.lane_w / 2, w.lane_w) - w.lane_w / 2  # lateral offset within a lane
        f_road *= 1 - 0.07 * np.exp(-((sl / 0.35) ** 2)) + 0.03 * np.exp(-(((np.abs(sl) - 0.85) / 0.25) ** 2))
        # pavement tiles with joints, curb band, grass
        f_pave = 1 + 0.06 * noise + 0.04 * coarse
        tw = np.clip(2.0 - foot[:, 0] / (0.15 * w.tile), 0, 1)
        ra = int(np.argmax(tw > 0)) if tw[-1] > 0 else len(tw)
        if ra < len(tw):
            joint = (np.mod(s[ra:], w.tile) < 0.07 * w.tile) | (np.mod(big_z[ra:], w.tile) < 0.07 * w.tile)
            f_pave[ra:] *= 1 - 0.25 * joint * tw[ra:, None]
        curb = (a - half < 0.25) & on_walk
        mi = np.where(lbl == _ROAD, 0, np.where(lbl == _TERRAIN, 3, np.where(curb, 2, 1))).astype(np.uint8)
        f = np.where(
            mi == 0,
            f_road,
            np.where(mi == 3, 1 + 0.18 * noise, np.where(mi == 2, 1 - 0.25 * (a - half < 0.1), f_pave)),
        )
        if w.wet > 0:
            f = np.where(mi == 0, f, f * (1 - 0.35 * w.wet))
        lut = np.array([w.asphalt, w.pave, w.curb, w.grass[0]], np.float32)
        col = np.take(lut, mi, axis=0)
        gy, gx = np.nonzero(mi == 3)
        if gy.size:  # grass: blend a green and a dry colour
            mix = _smooth(0.5 + 0.5 * coarse[gy, gx])[:, None]
            col[gy, gx] += (np.asarray(w.grass[1], np.float32) - lut[3]) * mix
        col *= f[..., None]
        self._markings(col, s, big_z, foot_lat, code, on_road)
        self._decals(col, s, big_z, lbl, t, center, rot)
        if w.wet > 0:
            fres = (0.1 + 0.45 * _smooth(t / 60.0))[:, None]
            puddle = _smooth((_sample(tex.coarse, s / 0.1 + 7, big_z / 0.1 + 3) - 0.8) * 2) * w.wet
            refl = np.where(on_road, np.clip(fres + 0.35 * puddle, 0, 0.7), 0)[..., None]
            sky = np.asarray(w.sky_horizon, np.float32) * 0.75
            col = col * (1 - np.where(on_road, 0.5 * w.wet, 0)[..., None]) * (1 - refl) + sky * refl
        col *= self._shadows(center, rot, r0)[..., None]
        buf.color[r0:] = col
        buf.label[r0:] = lbl
        buf.depth[r0:] = tc

    def _markings(
        self,
        col: np.ndarray,
        s: np.ndarray,
        z: np.ndarray,
        foot_lat: np.ndarray,
        code: np.ndarray,
        on_road: np.ndarray,
    ) -> None:
        """Anti-aliased lane lines: each pixel looks at its nearest line only."""
        w = self.w
        lines = sorted(w.lines)
        ls = np.array([ln[0] for ln in lines], np.float32)
        k = np.searchsorted((ls[1:] + ls[:-1]) / 2, s)
        d = np.abs(s - ls[k])
        iy, ix = np.nonzero((d < 0.1 + foot_lat) & on_road & (code != 0))
        k, d = k[iy, ix], d[iy, ix]
        width = np.array([ln[1] for ln in lines], np.float32)[k]
        dash = np.array([ln[2] for ln in lines], np.float32)[k]
        period = np.array([min(ln[3], 1e6) for ln in lines], np.float32)[k]
        inv = 1.0 / np.maximum(foot_lat[iy, 0], 1e-3)
        c = np.clip((width / 2 - d) * inv + 0.5, 0, 1) * np.clip(width * inv, 0, 1)
        c *= (dash >= period) | (np.mod(z[iy, ix], period) < dash)
        c = c[:, None]
        col[iy, ix] = col[iy, ix] * (1 - c) + np.asarray(w.line_color, np.float32) * c

    def _decals(
        self,
        col: np.ndarray,
        s: np.ndarray,
        z: np.ndarray,
        lbl: np.ndarray,
        t: np.ndarray,
        center: np.ndarray,
        rot: np.ndarray,
    ) -> None:
        w = self.w
        cz = center[2]
        for d in w.decals:
            if d.z1 < cz or d.z0 > cz + 120:
                continue
            corners = np.array(
                [[float(w.xc(zz)) + ss, 0.0, zz] for ss in (d.s0, d.s1) for zz in (d.z0, d.z1)]
            )
            depth = (corners - center) @ rot[2]
            lo, hi = depth.min(), depth.max()
            if hi < _NEAR:
                continue
            rows = np.nonzero((t >= lo - 1.0) & (t <= hi + 1.0))[0]
            if rows.size == 0:
                continue
            ra, rb = rows[0], rows[-1] + 1
            ss, zz = s[ra:rb], z[ra:rb]
            m = (ss >= d.s0) & (ss <= d.s1) & (zz >= d.z0) & (zz <= d.z1) & (lbl[ra:rb] == _ROAD)
            if not m.any():
                continue
            u = ss[m] - d.s0
            v = zz[m] - d.z0
            su, sv = d.s1 - d.s0, d.z1 - d.z0
            base = col[ra:rb][m]
            paint = np.asarray(d.color, np.float32)
            if d.kind == "zebra":
                cov = (np.mod(u, 1.0) < 0.5).astype(np.float32)
            elif d.kind == "solid":
                cov = np.ones_like(u)
            elif d.kind == "raster":
                assert d.raster is not None
                iy = np.clip((v / sv * d.raster.shape[0]).astype(int), 0, d.raster.shape[0] - 1)
                ix = np.clip((u / su * d.raster.shape[1]).astype(int), 0, d.raster.shape[1] - 1)
                cov = d.raster[iy, ix].astype(np.float32)
            elif d.kind == "manhole":
                r = np.hypot(u - su / 2, v - sv / 2) / (su / 2)
                ring = (r > 0.85) & (r <= 1.0)
                grid = (np.mod((u + v) / 0.06, 1.0) < 0.5) & (r < 0.85)
                cov = (r <= 1.0).astype(np.float32)
                paint = np.where(ring[:, None], paint * 0.7, np.where(grid[:, None], paint * 1.25, paint))
            elif d.kind == "patch":
                cov = np.full(u.shape, 0.9, np.float32)
                edge = np.minimum(np.minimum(u, su - u), np.minimum(v, sv - v)) < 0.05
                paint = np.where(
                    edge[:, None], paint * 0.6, base * (paint / np.asarray(w.asphalt, np.float32))
                )
            elif d.kind == "stain":
                r = np.hypot((u - su / 2) / (su / 2), (v - sv / 2) / (sv / 2))
                wob = 0.15 * np.sin(7 * np.arctan2(v - sv / 2, u - su / 2) + d.s0 * 10)
                cov = _smooth((1.0 + wob - r) * 4) * 0.7
            else:  # grate
                cov = np.ones_like(u)
                paint = np.where((np.mod(v / 0.06, 1.0) < 0.5)[:, None], paint * 0.5, paint[None] * 1.5)
            cov = cov[:, None]
            sub = col[ra:rb]
            sub[m] = base * (1 - cov) + paint * cov

    def _shadows(self, center: np.ndarray, rot: np.ndarray, r0: int) -> np.ndarray:
        """Multiplicative ground light factor from sun shadows and ambient occlusion (rows r0..)."""
        w, cam = self.w, self.cam
        cz = center[2]
        hh, ww = cam.height, cam.width
        out = np.ones((hh - r0, ww), np.float32)
        cam_sub = CameraModel(cam.fx, cam.fy, cam.cx, cam.cy - r0, cam.height_m, cam.pitch_rad, ww, hh - r0)
        for polys, zr, extra, strength, sigma, reach in (
            (w.shadows, w.shadow_z, self.actor_shadow, w.shadow_strength * (1 - w.light.ambient), 0.7, 110.0),
            (w.ao, w.ao_z, self.actor_ao, 0.45, 2.0, 80.0),
        ):
            if strength <= 0:
                continue
            sel = np.nonzero((zr[:, 1] > cz - 2) & (zr[:, 0] < cz + reach))[0] if len(zr) else []
            plist = [polys[i] for i in sel] + extra
            if not plist:
                continue
            mask = np.zeros((hh - r0, ww), np.uint8)
            _fill_ground_polys(plist, mask, cam_sub, center, rot)
            m = cv2.GaussianBlur(mask, (0, 0), sigma * self.px_scale)
            out *= 1 - (strength / 255.0) * m
        return out

    # -- moving actors
    def _prepare_actors(self, cz: float, t_sec: float) -> None:
        """Faces and ground shadow/AO polygons of vehicles and pedestrians at time t_sec."""
        w = self.w
        sun = w.light.sun
        self.actor_faces, self.actor_shadow, self.actor_ao = [], [], []
        for v in w.vehicles:
            dist = v.z0 + v.speed * t_sec - cz
            if -15 < dist < self.actor_distance:
                faces, corners, foot = _vehicle_faces(v, w, t_sec, far=dist > self.lod_distance)
                self.actor_faces += faces
                self.actor_ao.append(foot)
                if w.shadow_strength > 0:
                    self.actor_shadow.append(_ground_hull(corners, sun))
        for p in w.walkers:
            z = p.z0 + p.speed * t_sec
            if cz - 5 < z < cz + 120:
                pos = w.at(p.s, z)
                self.actor_faces.append(_Face(pos, np.array([1.0, 0, 0]), _UP, p.parts, billboard=True))
                self.actor_ao.append(_ellipse(pos[0], pos[2], 0.3, 0.3, 8))
                if w.shadow_strength > 0:
                    self.actor_shadow.append(
                        _ground_hull(
                            np.array([pos + np.array([dx, y, 0]) for dx in (-0.25, 0.25) for y in (0, 1.7)]),
                            sun,
                        )
                    )

    # -- atmosphere and camera
    def _finish(self, buf: _Buffers, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        w = self.w
        hh, ww = buf.depth.shape
        haze = np.exp(-w.fog * np.minimum(buf.depth, 1e5))  # transmittance; the sky keeps its own colour
        haze[buf.label == _SKY] = 1.0
        if self.fog_image is None:
            self.fog_image = np.empty((hh, ww, 3), np.float32)
            self.fog_image[:] = np.asarray(w.fog_color, np.float32)
            self.gain = self.vignette * (
                np.float32(w.exposure) * np.asarray(w.white_balance, np.float32) * 255
            )
        img = cv2.blendLinear(buf.color, self.fog_image, haze, 1 - haze)
        img = cv2.GaussianBlur(img, (0, 0), 0.55 * max(self.px_scale, 1.0) ** 0.5)
        img *= self.gain
        oy, ox = rng.integers(0, 32, 2)
        img += self.noise[oy : oy + hh, ox : ox + ww]
        image = cv2.convertScaleAbs(img)  # saturating round to uint8 (values are >= 0 but for noise)
        sem = buf.label.copy()
        sem[buf.obstacle] = _OBSTACLE
        ood = np.full(sem.shape, OOD_IGNORE, np.uint8)
        ood[sem == _ROAD] = OOD_INLIER
        ood[buf.obstacle] = OOD_ANOMALY
        return image, sem, ood, buf.depth
