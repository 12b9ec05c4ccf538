# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""The rasteriser: projects faces, clips them at the near plane and fills them into a z-buffer.

Why it exists: the renderer and the obstacle patches both draw faces the same way: vectorised culling and
projection, ``cv2.fillPoly`` masks, per-pixel depth and surface coordinates, material shading and Lambert
lighting; sun shadows and ambient occlusion are ground polygons filled through the same projection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ood_seg_node.datasets.synthetic.camera import CameraModel
from ood_seg_node.datasets.synthetic.constants import _NEAR, _UP
from ood_seg_node.datasets.synthetic.geometry import _Face, _Part
from ood_seg_node.datasets.synthetic.textures import _shade, _Textures


@dataclass
class _Light:
    sun: np.ndarray  # unit vector towards the sun
    ambient: float
    diffuse: float


@dataclass
class _Buffers:
    """Per-pixel colour (float RGB), depth (camera z), label and obstacle flag, plus flat views."""

    color: np.ndarray
    depth: np.ndarray
    label: np.ndarray
    obstacle: np.ndarray

    def __post_init__(self) -> None:
        # 1-D views: scattering through flat indices is cheaper than through (row, column) pairs
        self.color_f = self.color.reshape(-1, 3)
        self.depth_f = self.depth.reshape(-1)
        self.label_f = self.label.reshape(-1)
        self.obstacle_f = self.obstacle.reshape(-1)


def _clip_near(pc: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon against z >= _NEAR."""
    inside = pc[:, 2] >= _NEAR
    if inside.all():
        return pc
    out = []
    n = len(pc)
    for i in range(n):
        a, b = pc[i], pc[(i + 1) % n]
        ia, ib = inside[i], inside[(i + 1) % n]
        if ia:
            out.append(a)
        if ia != ib:
            t = (_NEAR - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out) if len(out) >= 3 else np.zeros((0, 3))


def _draw_faces(
    faces: list[_Face],
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    buf: _Buffers,
    tex: _Textures,
    light: _Light,
) -> None:
    """Rasterise faces into the buffers with a z-buffer, shading surviving pixels in surface coordinates.

    Orientation, back-face and frustum culling and projection run vectorised over all faces at once; only
    the survivors are filled one by one, nearest first, so occluded pixels are rejected before shading.
    """
    if not faces:
        return
    height, width = buf.depth.shape
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    counts = np.fromiter((len(f.points) for f in faces), np.int64, len(faces))
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pts = np.concatenate([f.points for f in faces])
    origin = np.array([f.origin for f in faces])
    au = np.array([f.axis_u for f in faces])
    av = np.array([f.axis_v for f in faces])
    nrm = np.array([f.normal for f in faces])
    bb = np.fromiter((f.billboard for f in faces), bool, len(faces))
    cull = np.fromiter((f.cull for f in faces), bool, len(faces))
    to_cam = center - origin
    if bb.any():  # billboards turn about the vertical axis to face the camera
        h = np.maximum(np.hypot(to_cam[bb, 0], to_cam[bb, 2]), 1e-6)
        nb = np.stack([to_cam[bb, 0] / h, np.zeros_like(h), to_cam[bb, 2] / h], 1)
        nrm[bb] = nb
        au[bb] = np.stack([nb[:, 2], np.zeros_like(h), -nb[:, 0]], 1)
        av[bb] = _UP
    side = np.einsum("ij,ij->i", nrm, to_cam)
    nrm[side < 0] *= -1  # two-sided faces are lit from the side the camera sees
    rep = np.repeat(np.arange(len(faces)), counts)
    world = origin[rep] + pts[:, :1] * au[rep] + pts[:, 1:] * av[rep]
    pc = (world - center) @ rot.T
    z = pc[:, 2]
    zp = np.maximum(z, _NEAR)
    px = fx * pc[:, 0] / zp + cx
    py = fy * pc[:, 1] / zp + cy
    zmin, zmax = np.minimum.reduceat(z, start), np.maximum.reduceat(z, start)
    xmin, xmax = np.minimum.reduceat(px, start), np.maximum.reduceat(px, start)
    ymin, ymax = np.minimum.reduceat(py, start), np.maximum.reduceat(py, start)
    ex, ey = xmax - xmin, ymax - ymin
    tiny = (ex * ey < 0.3) & (np.maximum(ex, ey) < 1.5) & (zmin >= _NEAR)  # far below a pixel: invisible
    ok = (
        ~(cull & (side <= 0))
        & (zmax >= _NEAR)
        & (xmax >= -1)
        & (xmin <= width)
        & (ymax >= -1)
        & (ymin <= height)
    )
    ok &= ~tiny
    idx = np.nonzero(ok)[0]
    for i in idx[np.argsort(zmin[idx], kind="stable")]:
        a, b = start[i], start[i] + counts[i]
        pix = np.stack([px[a:b], py[a:b]], 1) if zmin[i] >= _NEAR else None
        _raster_face(faces[i], au[i], av[i], nrm[i], pc[a:b], pix, cam, center, rot, buf, tex, light)


def _raster_face(
    face: _Face,
    au: np.ndarray,
    av: np.ndarray,
    nrm: np.ndarray,
    pc: np.ndarray,
    pix: np.ndarray | None,
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    buf: _Buffers,
    tex: _Textures,
    light: _Light,
) -> None:
    """Fill one face into the z-buffered image.

    ``pc`` are its vertices in camera coordinates, ``pix`` their projections (None: some lie behind the
    near plane and the contours are clipped here).
    """
    height, width = buf.depth.shape
    fx, fy, cx, cy = cam.fx, cam.fy, cam.cx, cam.cy
    zc = pc[:, 2]
    if pix is not None:
        pix_all = pix
        conts = np.split(pix, face.splits) if len(face.splits) else [pix]
    else:
        conts = []
        for c in np.split(pc, face.splits):
            c = _clip_near(c)
            conts.append(
                np.stack([fx * c[:, 0] / c[:, 2] + cx, fy * c[:, 1] / c[:, 2] + cy], 1)
                if len(c)
                else np.zeros((0, 2))
            )
        pix_all = np.concatenate(conts)
        if len(pix_all) == 0:
            return
    lo, hi = pix_all.min(0), pix_all.max(0)
    x0, y0 = max(int(math.floor(lo[0])), 0), max(int(math.floor(lo[1])), 0)
    x1, y1 = min(int(math.ceil(hi[0])) + 1, width), min(int(math.ceil(hi[1])) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    if buf.depth[y0:y1, x0:x1].max() <= max(float(zc.min()), _NEAR):
        return  # everything in its bounding box is already nearer: fully occluded
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    if len(face.parts) == 1:
        cv2.fillPoly(
            mask,
            [np.round((c - (x0, y0)) * 16).astype(np.int32) for c in conts if len(c) >= 3],
            1,
            lineType=cv2.LINE_8,
            shift=4,
        )
    else:
        for k in range(len(face.parts)):
            group = [
                np.round((c - (x0, y0)) * 16).astype(np.int32)
                for c, o in zip(conts, face.owner, strict=True)
                if o == k and len(c) >= 3
            ]
            if group:
                cv2.fillPoly(mask, group, k + 1, lineType=cv2.LINE_8, shift=4)
    iy, ix = np.nonzero(mask)
    if iy.size == 0:
        return
    zmin = float(zc.min())
    flat = (iy + y0) * width + (ix + x0)
    if iy.size <= 64 and not face.obstacle and face.flat_ok and float(zc.max()) - zmin < 0.15 * zmin:
        # small and far: constant depth and untextured colours are indistinguishable from the full path
        zm = np.float32(zc.mean())
        keep = buf.depth_f[flat] > zm
        if keep.any():
            flat = flat[keep]
            sun = light.ambient + light.diffuse * max(float(nrm @ light.sun), 0.0)
            pal = np.array(
                [p.material.c1 * (1.0 if p.material.emissive else sun) for p in face.parts], np.float32
            )
            lab = np.array([p.label for p in face.parts], np.uint8)
            k = mask[iy[keep], ix[keep]] - 1
            buf.depth_f[flat] = zm
            buf.color_f[flat] = pal[k]
            buf.label_f[flat] = lab[k]
        return
    o_c = rot @ (face.origin - center)
    n_c = rot @ nrm
    xs = ((ix + x0) - cx) * np.float32(1 / fx)
    ys = ((iy + y0) - cy) * np.float32(1 / fy)
    den = n_c[0] * xs + n_c[1] * ys + n_c[2]
    num = float(n_c @ o_c)
    # edge-on planes have unstable depth: fall back to the face's centre depth
    ok = np.abs(den) > 1e-6
    t = np.full(den.shape, max(float(o_c[2]), _NEAR), np.float32)
    np.divide(num, den, out=t, where=ok)
    t[t < _NEAR * 0.5] = max(float(o_c[2]), _NEAR)
    keep = t < buf.depth_f[flat]
    if not keep.all():
        if not keep.any():
            return
        flat, t, xs, ys, iy, ix = flat[keep], t[keep], xs[keep], ys[keep], iy[keep], ix[keep]
    u_c, v_c = rot @ au, rot @ av
    rx, ry, rz = t * xs - o_c[0], t * ys - o_c[1], t - o_c[2]
    u = (rx * u_c[0] + ry * u_c[1] + rz * u_c[2]).astype(np.float32)
    v = (rx * v_c[0] + ry * v_c[1] + rz * v_c[2]).astype(np.float32)
    single = len(face.parts) == 1
    pk = None if single else mask[iy, ix]
    for k, part in enumerate(face.parts):
        if single:
            us, vs, fl, ts = u, v, flat, t
        else:
            sel = pk == k + 1
            if not sel.any():
                continue
            us, vs, fl, ts = u[sel], v[sel], flat[sel], t[sel]
        col, alpha = _shade(part.material, us, vs, tex, float(ts.mean()) / fx)
        if not part.material.emissive:
            col *= _lighting(part, us, vs, nrm, au, av, light)[:, None]
        if alpha is not None:
            fl, ts, col = fl[alpha], ts[alpha], col[alpha]
        buf.depth_f[fl] = ts
        buf.color_f[fl] = col
        buf.label_f[fl] = part.label
        if face.obstacle:
            buf.obstacle_f[fl] = True


def _lighting(
    part: _Part, u: np.ndarray, v: np.ndarray, nrm: np.ndarray, au: np.ndarray, av: np.ndarray, light: _Light
) -> np.ndarray:
    """Ambient + Lambert shading with per-pixel normals for curved stand-ins (cylinders, spheres)."""
    if part.normal == "flat" or u.size < 8:
        return np.full(u.shape, light.ambient + light.diffuse * max(float(nrm @ light.sun), 0.0), np.float32)
    mid, half = part.bounds()
    x = np.clip((u - mid[0]) / half[0], -0.99, 0.99)
    y = np.clip((v - mid[1]) / half[1], -0.99, 0.99)
    if part.normal == "cyl":
        nz = np.sqrt(1 - x * x)
        n = x[:, None] * au[None] + nz[:, None] * nrm[None]
    elif part.normal == "cylh":
        nz = np.sqrt(1 - y * y)
        n = y[:, None] * av[None] + nz[:, None] * nrm[None]
    else:
        nz = np.sqrt(np.clip(1 - x * x - y * y, 0.02, 1))
        n = x[:, None] * au[None] + y[:, None] * av[None] + nz[:, None] * nrm[None]
    lam = np.clip(n @ light.sun, 0, None)
    shade = light.ambient * (0.75 + 0.25 * nz) + light.diffuse * lam
    if part.material.gloss:
        shade = shade + part.material.gloss * lam**24
    return shade.astype(np.float32)


def _fill_ground_polys(
    polys: list[np.ndarray],
    mask: np.ndarray,
    cam: CameraModel,
    center: np.ndarray,
    rot: np.ndarray,
    value: int = 255,
) -> None:
    """Fill world ground polygons (k,2 arrays of x, z at y=0) into an image-space mask."""
    if not polys:
        return
    pts = np.concatenate(polys)
    p3 = np.stack([pts[:, 0] - center[0], np.full(len(pts), -center[1]), pts[:, 1] - center[2]], 1)
    pc = p3 @ rot.T
    z = pc[:, 2]
    zs = np.maximum(z, _NEAR)
    pix = np.stack([cam.fx * pc[:, 0] / zs + cam.cx, cam.fy * pc[:, 1] / zs + cam.cy], 1)
    lim = 4 * mask.shape[1]
    out = []
    start = 0
    for poly in polys:
        end = start + len(poly)
        zp = z[start:end]
        if zp.max() >= _NEAR:
            if zp.min() >= _NEAR:
                q = pix[start:end]
            else:
                c = _clip_near(pc[start:end])
                q = (
                    np.stack([cam.fx * c[:, 0] / c[:, 2] + cam.cx, cam.fy * c[:, 1] / c[:, 2] + cam.cy], 1)
                    if len(c) >= 3
                    else None
                )
            if q is not None and q[:, 1].max() >= 0 and q[:, 0].max() >= 0 and q[:, 0].min() < mask.shape[1]:
                out.append(np.round(np.clip(q, -lim, lim) * 16).astype(np.int32))
        start = end
    for q in out:  # one call per polygon: a single call would fill overlaps even-odd
        cv2.fillPoly(mask, [q], value, lineType=cv2.LINE_8, shift=4)


def _ground_hull(points: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Convex hull (k,2 of x, z) of the sun shadow that 3-D points cast on the ground."""
    ys = np.maximum(points[:, 1], 0.0)
    g = np.stack([points[:, 0] - ys * sun[0] / sun[1], points[:, 2] - ys * sun[2] / sun[1]], 1)
    return cv2.convexHull(g.astype(np.float32)).reshape(-1, 2).astype(np.float64)
